"""Signed, encrypted update images (format 2), verified and decrypted on the box.

Format: docs/update-image.md. The box trusts a root (fleetbox.updroot: keys and
thresholds, itself signed); an image's head (manifest and chunk table) must carry a threshold of valid
signatures by the root's image keys before any field of it is believed. Then the
ciphertext arrives chunk by chunk: each chunk's SHA-256 is checked against the signed
table BEFORE it is decrypted (AES-256-CBC, chained across chunks, so chunk i needs only
the manifest and the last ciphertext block of chunk i-1: resume after a cut) and handed
to the caller's sink. Memory: one chunk buffer and the chunk table, whatever the size.

Every refusal is an UpdateError subclass whose `reason` is a stable short code for logs
and for the report to the cloud.
"""
import hashlib
from binascii import unhexlify

from fleetbox import keywrap, port
from fleetbox.updroot import (  # noqa: F401  (the refusals and load_root: callers know them from here)
    BadChunk, BadFormat, BadSignature, CounterRollback, Expired, LoaderTooOld, OlderVersion, Root, RootRollback,
    ThresholdNotMet, TooBig, Truncated, UnknownKey, UpdateError, WrongBoard, WrongBox, WrongKey,
    _hexfield, _int, _json, _read_exact, _read_into, _read_signatures, _str, _u16, _u32, check_signatures, load_root,
)

IMAGE_MAGIC = b"FBUP"
IMAGE_FORMAT = 2
WRAP_TYPE = "fleetbox-key-wrap"
KEK_INFO = b"fleetbox/update-kek/v1\x00"
KEY_CHECK_PREFIX = b"fleetbox/content-key-check/v1\x00"
MAX_MANIFEST = 4096        # bytes of manifest JSON
MAX_CHUNK = 16384          # the box's chunk buffer
MIN_CHUNK = 1024
MAX_CHUNKS = 512           # 16 KB of chunk table


def parse_version(text):
    """'1.2.3' -> (1, 2, 3): versions compare as tuples of integers."""
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        raise BadFormat("version %r is not dotted integers" % text)


def no_rollback(current_version, current_counter):
    """The usual version hook: the security counter never goes down; the version never
    goes back unless the manifest is a signed recovery ("recovery": true)."""
    cur = parse_version(current_version)

    def check(manifest):
        if manifest["security_counter"] < current_counter:
            raise CounterRollback("security counter %d is below the box's %d"
                                  % (manifest["security_counter"], current_counter))
        if parse_version(manifest["version"]) < cur and manifest.get("recovery") is not True:
            raise OlderVersion("version %s is older than the running %s"
                               % (manifest["version"], current_version))
    return check


def kek_for(identity):
    """The box's key-encryption key for update wraps: HKDF-SHA-256 over its device key."""
    return keywrap.hkdf_sha256(unhexlify(identity["device_key"]),
                               KEK_INFO + identity["serial"].encode())


def key_check(content_key):
    return hashlib.sha256(KEY_CHECK_PREFIX + content_key).digest()


class ImageReader:
    """One update image being verified: head at construction, then chunks via feed().

    read(n) -> up to n bytes of the image from its start (a file, a download); the
    head is consumed from it. Keyword policy: board (required match), min_time (the
    box's lower bound on the time: expired metadata is refused), slot_size (largest
    payload), loader_version (refuse images needing a newer loader), check_version
    (hook called with the manifest dict; see no_rollback).
    """

    def __init__(self, read, root, board, min_time=0, slot_size=None, loader_version=None,
                 check_version=None):
        head = _read_exact(read, 16, "image header")
        if bytes(head[:4]) != IMAGE_MAGIC:
            raise BadFormat("not a fleetbox update image (magic %r)" % bytes(head[:4]))
        if _u16(head, 4) != IMAGE_FORMAT:
            raise BadFormat("update image format %d (want %d)" % (_u16(head, 4), IMAGE_FORMAT))
        msize = _u32(head, 8)
        tsize = _u32(head, 12)
        if msize > MAX_MANIFEST:
            raise BadFormat("manifest of %d bytes (at most %d)" % (msize, MAX_MANIFEST))
        if tsize % 32 or tsize == 0:
            raise BadFormat("chunk table of %d bytes" % tsize)
        if tsize > 32 * MAX_CHUNKS:
            raise TooBig("%d chunks: more than this box's %d" % (tsize // 32, MAX_CHUNKS))
        h = hashlib.sha256(head)
        mbytes = _read_exact(read, msize, "manifest")
        h.update(mbytes)
        self.table = bytearray(tsize)
        _read_into(read, self.table, "chunk table")
        h.update(self.table)
        self.digest = h.digest()        # what signatures and key wraps name
        sigs = _read_signatures(read)
        self.head_size = 16 + msize + tsize + 2 + sum(34 + len(s) for _, s in sigs)
        self.valid_signatures = check_signatures(self.digest, sigs, root.keys, root.roles["image"],
                                                 "image manifest")
        del sigs
        m = _json(mbytes, "manifest")
        del mbytes
        self.manifest = m
        self._check_manifest(m, board, min_time, slot_size, loader_version, tsize // 32)
        if check_version is not None:
            check_version(m)
        self.chunk_size = m["chunk_size"]
        self.chunks = m["chunks"]
        self.ciphertext_size = m["ciphertext_size"]
        self.payload_size = m["payload_size"]
        self.created = m["created"]
        self._iv = _hexfield(m, "iv", 16)
        self._payload_sha = _hexfield(m, "payload_sha256", 32)
        self._key_check = _hexfield(m["key_wrap"], "key_check", 32)
        self._key = None
        self._next = None               # index of the chunk feed() takes next
        self._dec = None
        self._hash = None               # over the plaintext, when it is seen from chunk 0
        self._buf = None

    def _check_manifest(self, m, board, min_time, slot_size, loader_version, table_chunks):
        if m.get("type") != "fleetbox-image" or m.get("format") != IMAGE_FORMAT:
            raise BadFormat("manifest type/format %r/%r" % (m.get("type"), m.get("format")))
        if m.get("product") != "fleetbox":
            raise WrongBoard("image for product %r, not fleetbox" % m.get("product"))
        if _str(m, "board") != board:
            raise WrongBoard("image for board %r, this box is %r" % (m["board"], board))
        _str(m, "version")
        _str(m, "kind")
        _int(m, "security_counter")
        _int(m, "created")
        if _int(m, "expires") < min_time:
            raise Expired("image metadata expired at %d (time is at least %d)" % (m["expires"], min_time))
        need = _int(m, "min_loader")
        if loader_version is not None and need > loader_version:
            raise LoaderTooOld("image needs loader %d, this box has %d" % (need, loader_version))
        psize = _int(m, "payload_size", 1)
        if slot_size is not None and psize > slot_size:
            raise TooBig("payload of %d bytes does not fit the %d-byte slot" % (psize, slot_size))
        csize = _int(m, "chunk_size", MIN_CHUNK, MAX_CHUNK)
        if csize % 16:
            raise BadFormat("chunk size %d is not a multiple of 16" % csize)
        ctext = _int(m, "ciphertext_size", 16)
        if ctext != (psize + 15) // 16 * 16:
            raise BadFormat("ciphertext size %d does not match payload size %d" % (ctext, psize))
        if _int(m, "chunks", 1) != (ctext + csize - 1) // csize or m["chunks"] != table_chunks:
            raise BadFormat("chunk count %r does not match the sizes and the table" % m["chunks"])
        if m.get("cipher") != "aes-256-cbc":
            raise BadFormat("cipher %r" % m.get("cipher"))
        kw = m.get("key_wrap")
        if not isinstance(kw, dict) or kw.get("alg") != "aes-kw-256" or kw.get("kdf") != "hkdf-sha256":
            raise BadFormat("key wrap parameters %r" % kw)

    # -- the content key

    def set_key(self, content_key):
        """Use this content key (refused unless the signed manifest's key check names it)."""
        if len(content_key) != 32 or not port.consteq(key_check(content_key), self._key_check):
            raise WrongKey("content key is not this image's key")
        self._key = bytes(content_key)

    def unwrap(self, wrap_bytes, identity):
        """Take the content key from a per-box wrap (JSON from the update service) with
        this box's identity ({"serial", "kid", "device_key"})."""
        w = _json(wrap_bytes, "key wrap")
        if w.get("type") != WRAP_TYPE or w.get("format") != 1:
            raise BadFormat("not a key wrap (type/format %r/%r)" % (w.get("type"), w.get("format")))
        if w.get("serial") != identity["serial"] or w.get("kid") != identity["kid"]:
            raise WrongBox("key wrapped for box %r key %r, this is %r key %r"
                           % (w.get("serial"), w.get("kid"), identity["serial"], identity["kid"]))
        if _hexfield(w, "image", 32) != self.digest:
            raise WrongKey("key wrap is for another image")
        try:
            key = keywrap.unwrap(kek_for(identity), _hexfield(w, "wrapped", 40))
        except keywrap.UnwrapError:
            raise WrongBox("key wrap does not open with this box's key (wrapped for another box)")
        self.set_key(key)

    # -- chunks

    def chunk_offset(self, index):
        """Where chunk index starts in the image file (for HTTP Range requests)."""
        return self.head_size + index * self.chunk_size

    def chunk_len(self, index):
        if index == self.chunks - 1:
            return self.ciphertext_size - index * self.chunk_size
        return self.chunk_size

    def chunk_buffer(self, index):
        """A reusable buffer of chunk index's size: readinto() it, then feed() it."""
        if self._buf is None:
            self._buf = bytearray(self.chunk_size)
        return memoryview(self._buf)[:self.chunk_len(index)]

    def work_buffer(self):
        """The chunk buffer whole, lent out between chunks (copying, re-hashing a slot)."""
        if self._buf is None:
            self._buf = bytearray(self.chunk_size)
        return self._buf

    def first_iv(self):
        return self._iv

    def _check_chunk(self, index, data):
        if not 0 <= index < self.chunks:
            raise BadChunk("chunk %d of %d" % (index, self.chunks))
        if len(data) != self.chunk_len(index):
            raise Truncated("chunk %d has %d bytes, want %d" % (index, len(data), self.chunk_len(index)))
        if hashlib.sha256(data).digest() != bytes(self.table[32 * index:32 * index + 32]):
            raise BadChunk("chunk %d does not match its signed hash" % index)

    def start(self, index=0, prev=None):
        """Begin decrypting at chunk index. For index > 0 (resume), prev is the last
        ciphertext block (16 bytes, kept by the caller with its progress) or the whole
        ciphertext of chunk index-1 (checked against the table)."""
        if self._key is None:
            raise WrongKey("no content key: call set_key() or unwrap() first")
        if index == 0:
            iv = self._iv
        elif prev is not None and len(prev) == 16:
            iv = bytes(prev)
        elif prev is not None:
            self._check_chunk(index - 1, prev)
            iv = bytes(prev[-16:])
        else:
            raise BadChunk("resume at chunk %d needs the previous ciphertext block" % index)
        if not 0 <= index < self.chunks:
            raise BadChunk("start at chunk %d of %d" % (index, self.chunks))
        self._dec = port.aes_cbc_decryptor(self._key, iv)
        self._next = index
        self._hash = hashlib.sha256() if index == 0 else None

    def feed(self, index, data, sink):
        """Check chunk index against the signed table, then decrypt it and call
        sink(payload offset, plaintext memoryview) (valid only during the call)."""
        if self._next is None:
            self.start(0)
        if index != self._next:
            raise BadChunk("chunk %d out of order (want %d)" % (index, self._next))
        self._check_chunk(index, data)
        n = len(data)
        if self._buf is None:
            self._buf = bytearray(self.chunk_size)
        out = memoryview(self._buf)[:n]
        self._dec.decrypt(data, out)
        offset = index * self.chunk_size
        if index == self.chunks - 1:
            end = self.payload_size - offset
            for b in out[end:]:
                if b:
                    raise BadChunk("padding of the last chunk is not zero")
            out = out[:end]
        if self._hash is not None:
            self._hash.update(out)
        self._next = index + 1
        sink(offset, out)

    def finish(self):
        """After the last chunk: True when the whole payload was seen and matches the signed
        payload_sha256 (False after a resume: the caller checks the slot whole)."""
        if self._next != self.chunks:
            raise Truncated("payload ends at chunk %s of %d" % (self._next, self.chunks))
        if self._hash is None:
            return False
        if self._hash.digest() != self._payload_sha:
            raise BadChunk("payload does not match its signed SHA-256")
        return True

    def payload_sha256(self):
        return self._payload_sha


def _fill(readinto, buf, what):
    pos = 0
    while pos < len(buf):
        n = readinto(buf[pos:])
        if not n:
            raise Truncated("%s truncated (%d of %d bytes)" % (what, pos, len(buf)))
        pos += n


def install(read, sink, root, board, content_key=None, wrap=None, identity=None, readinto=None,
            **policy):
    """Verify a whole image from read() (head, then every chunk in order), sending the
    plaintext to sink(offset, data). With readinto (a stream's), chunks are read straight
    into the chunk buffer. Returns the ImageReader (manifest, digest)."""
    img = ImageReader(read, root, board, **policy)
    if content_key is not None:
        img.set_key(content_key)
    else:
        img.unwrap(wrap, identity)
    img.start(0)
    for i in range(img.chunks):
        buf = img.chunk_buffer(i)
        if readinto is not None:
            _fill(readinto, buf, "chunk %d" % i)
        else:
            _read_into(read, buf, "chunk %d" % i)
        img.feed(i, buf, sink)
    if read(1):
        raise BadFormat("image has bytes after its last chunk")
    img.finish()
    return img
