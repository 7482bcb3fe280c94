"""Update images, format 2: sign, inspect, verify and wrap for one box (docs/update-image.md).

The payload (normally a format-1 `.fbi` from `fbtool build`) is encrypted with a random
AES-256 content key in CBC mode chained across fixed-size chunks; the signed head carries
the manifest and the SHA-256 of every ciphertext chunk. The content key reaches a box
only as a per-box RFC 3394 wrap under a key derived from that box's device key.
"""
import hashlib
import json
import os
import struct
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from . import image as fbi
from . import signing
from .keys import SigningError

MAGIC = b"FBUP"
FORMAT = 2
HEADER = "<4sHHII"      # magic, format, reserved, manifest length, chunk table length
HEADER_SIZE = 16
KEK_INFO = b"fleetbox/update-kek/v1\x00"
KEY_CHECK_PREFIX = b"fleetbox/content-key-check/v1\x00"
WRAP_TYPE = "fleetbox-key-wrap"
DEFAULT_CHUNK = 4096
MIN_CHUNK, MAX_CHUNK = 1024, 16384     # the box's chunk buffer bounds (fleetbox.updimage)
MAX_CHUNKS = 512


def key_check(content_key):
    return hashlib.sha256(KEY_CHECK_PREFIX + content_key).digest()


def kek(device_key, serial):
    """The per-box key-encryption key: HKDF-SHA-256(device_key, info = KEK_INFO || serial)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=KEK_INFO + serial.encode()).derive(device_key)


def _cbc(key, iv, data, encrypt):
    c = Cipher(algorithms.AES(key), modes.CBC(iv))
    ctx = c.encryptor() if encrypt else c.decryptor()
    return ctx.update(data) + ctx.finalize()


def describe_payload(payload):
    """(kind, board, version, payload format) of a format-1 image; None when not one."""
    try:
        manifest, _ = fbi.parse(payload)
    except (fbi.ImageError, KeyError, TypeError):
        return None
    return manifest.get("kind", "app"), manifest["board"], manifest["version"], "fbi1"


def sign(payload, signers, *, security_counter, min_loader, expires, board=None, version=None,
         kind=None, recovery=False, chunk_size=DEFAULT_CHUNK, content_key=None, iv=None,
         created=None):
    """(image bytes, content key). A format-1 image payload gives board, version and kind
    (any given must agree); a raw payload needs all three."""
    found = describe_payload(payload)
    if found:
        for name, given, have in (("board", board, found[1]), ("version", version, found[2]),
                                  ("kind", kind, found[0])):
            if given is not None and given != have:
                raise SigningError("--%s %s disagrees with the payload's %s" % (name, given, have))
        kind, board, version, pformat = found
    else:
        if not (board and version and kind):
            raise SigningError("payload is not a fleetbox image: give --board, --version and --kind")
        pformat = "raw"
    if chunk_size % 16 or not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise SigningError("chunk size %d: want a multiple of 16 in %d..%d" % (chunk_size, MIN_CHUNK, MAX_CHUNK))
    content_key = content_key or os.urandom(32)
    iv = iv or os.urandom(16)
    padded = payload + b"\x00" * (-len(payload) % 16)
    ciphertext = _cbc(content_key, iv, padded, True)
    chunks = [ciphertext[i:i + chunk_size] for i in range(0, len(ciphertext), chunk_size)]
    if len(chunks) > MAX_CHUNKS:
        raise SigningError("%d chunks: more than a box takes (%d); use a larger --chunk-size"
                           % (len(chunks), MAX_CHUNKS), "too_big")
    manifest = {
        "type": "fleetbox-image",
        "format": FORMAT,
        "product": "fleetbox",
        "kind": kind,
        "board": board,
        "version": version,
        "security_counter": security_counter,
        "min_loader": min_loader,
        "recovery": bool(recovery),
        "created": int(time.time()) if created is None else created,
        "expires": expires,
        "payload_format": pformat,
        "payload_size": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "cipher": "aes-256-cbc",
        "iv": iv.hex(),
        "chunk_size": chunk_size,
        "chunks": len(chunks),
        "ciphertext_size": len(ciphertext),
        "key_wrap": {"alg": "aes-kw-256", "kdf": "hkdf-sha256",
                     "info": KEK_INFO[:-1].decode(), "key_check": key_check(content_key).hex()},
    }
    mbytes = signing.canonical(manifest)
    table = b"".join(hashlib.sha256(c).digest() for c in chunks)
    head = struct.pack(HEADER, MAGIC, FORMAT, 0, len(mbytes), len(table)) + mbytes + table
    return head + signing.signature_block(head, signers) + ciphertext, content_key


class Image:
    """A parsed format-2 image (structure only: verify() checks what it claims)."""

    def __init__(self, data):
        if len(data) < HEADER_SIZE:
            raise SigningError("image header truncated", "truncated")
        magic, fmt, _, msize, tsize = struct.unpack_from(HEADER, data)
        if magic != MAGIC:
            raise SigningError("not a fleetbox update image (magic %r)" % magic, "bad_format")
        if fmt != FORMAT:
            raise SigningError("update image format %d (want %d)" % (fmt, FORMAT), "bad_format")
        end = HEADER_SIZE + msize + tsize
        if len(data) < end:
            raise SigningError("image head truncated", "truncated")
        if tsize % 32 or not tsize:
            raise SigningError("chunk table of %d bytes" % tsize, "bad_format")
        self.signed = data[:end]
        self.digest = hashlib.sha256(self.signed).digest()
        self.manifest_bytes = data[HEADER_SIZE:HEADER_SIZE + msize]
        self._manifest = None
        self.table = [data[HEADER_SIZE + msize + i:HEADER_SIZE + msize + i + 32] for i in range(0, tsize, 32)]
        self.sigs, self.head_size = signing.parse_signatures(data, end)
        self.ciphertext = data[self.head_size:]

    @property
    def manifest(self):
        """The manifest dict: believe it only once the signatures are checked (verify())."""
        if self._manifest is None:
            try:
                self._manifest = json.loads(self.manifest_bytes)
            except ValueError:
                raise SigningError("manifest is not JSON", "bad_format")
            if not isinstance(self._manifest, dict):
                raise SigningError("manifest is not a JSON object", "bad_format")
        return self._manifest

    def chunk(self, i):
        cs = self.manifest["chunk_size"]
        return self.ciphertext[i * cs:(i + 1) * cs]


def _version(text):
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        raise SigningError("version %r is not dotted integers" % text, "bad_format")


def check_rollback(m, current_version=None, current_counter=None):
    """The box's rule: the counter never goes down; the version goes back only in a signed recovery."""
    if current_counter is not None and m["security_counter"] < current_counter:
        raise SigningError("security counter %d is below the box's %d" % (m["security_counter"], current_counter),
                           "security_counter")
    if current_version is not None and _version(m["version"]) < _version(current_version) \
            and m.get("recovery") is not True:
        raise SigningError("version %s is older than the running %s" % (m["version"], current_version),
                           "older_version")


def verify(data, root, *, board=None, min_time=0, slot_size=None, loader_version=None,
           content_key=None, identity=None, wrap=None, current_version=None, current_counter=None):
    """Check an image as the box does; returns (Image, payload or None). With a content
    key (or an identity and its wrap) the payload is decrypted and, when it is a format-1
    image, parsed and checked too."""
    img = Image(data)
    signing.check_signatures(img.signed, img.sigs, root.pubkeys, root.role("image"), "image manifest")
    try:
        return _verify_signed(img, root, board, min_time, slot_size, loader_version, content_key,
                              identity, wrap, current_version, current_counter)
    except (KeyError, TypeError, AttributeError) as e:
        raise SigningError("manifest: missing or malformed field %s" % e, "bad_format")


def _verify_signed(img, root, board, min_time, slot_size, loader_version, content_key, identity, wrap,
                   current_version, current_counter):
    m = img.manifest
    if m.get("type") != "fleetbox-image" or m.get("format") != FORMAT:
        raise SigningError("manifest type/format", "bad_format")
    if board is not None and m["board"] != board:
        raise SigningError("image for board %r, not %r" % (m["board"], board), "wrong_board")
    if m["expires"] < min_time:
        raise SigningError("image metadata expired at %d (time is at least %d)" % (m["expires"], min_time), "expired")
    if loader_version is not None and m["min_loader"] > loader_version:
        raise SigningError("image needs loader %d, have %d" % (m["min_loader"], loader_version), "loader_too_old")
    if slot_size is not None and m["payload_size"] > slot_size:
        raise SigningError("payload of %d bytes does not fit the %d-byte slot" % (m["payload_size"], slot_size),
                           "too_big")
    check_rollback(m, current_version, current_counter)
    cs = m["chunk_size"]
    if m["ciphertext_size"] != (m["payload_size"] + 15) // 16 * 16 or \
            m["chunks"] != len(img.table) or m["chunks"] != -(-m["ciphertext_size"] // cs):
        raise SigningError("manifest sizes disagree with each other or the chunk table", "bad_format")
    if len(img.ciphertext) < m["ciphertext_size"]:
        raise SigningError("image truncated: %d of %d ciphertext bytes" % (len(img.ciphertext), m["ciphertext_size"]),
                           "truncated")
    if len(img.ciphertext) > m["ciphertext_size"]:
        raise SigningError("image has bytes after its last chunk", "bad_format")
    for i, want in enumerate(img.table):
        if hashlib.sha256(img.chunk(i)).digest() != want:
            raise SigningError("chunk %d does not match its signed hash" % i, "bad_chunk")
    if wrap is not None:
        content_key = unwrap(wrap, identity, img)
    if content_key is None:
        return img, None
    if key_check(content_key) != bytes.fromhex(m["key_wrap"]["key_check"]):
        raise SigningError("content key is not this image's key", "wrong_key")
    payload = _cbc(content_key, bytes.fromhex(m["iv"]), img.ciphertext, False)
    payload, pad = payload[:m["payload_size"]], payload[m["payload_size"]:]
    if any(pad) or hashlib.sha256(payload).hexdigest() != m["payload_sha256"]:
        raise SigningError("payload does not match its signed SHA-256", "bad_chunk")
    if m["payload_format"] == "fbi1":
        try:
            inner, _ = fbi.parse(payload)
        except fbi.ImageError as e:
            raise SigningError("inner image: %s" % e, "bad_format")
        if (inner["board"], inner["version"]) != (m["board"], m["version"]):
            raise SigningError("inner image is %s %s, manifest says %s %s" % (
                inner["board"], inner["version"], m["board"], m["version"]), "bad_format")
    return img, payload


def make_wrap(img, content_key, serial, kid, device_key):
    """The small per-box object the update service hands to one box (JSON bytes)."""
    if key_check(content_key) != bytes.fromhex(img.manifest["key_wrap"]["key_check"]):
        raise SigningError("content key is not this image's key", "wrong_key")
    wrapped = aes_key_wrap(kek(device_key, serial), content_key)
    return signing.canonical({"type": WRAP_TYPE, "format": 1, "image": img.digest.hex(),
                              "serial": serial, "kid": kid, "wrapped": wrapped.hex()})


def unwrap(wrap_bytes, identity, img):
    """The content key from a wrap, as the box opens it with its identity."""
    try:
        w = json.loads(wrap_bytes)
    except ValueError:
        raise SigningError("key wrap is not JSON", "bad_format")
    if w.get("type") != WRAP_TYPE or w.get("format") != 1:
        raise SigningError("not a key wrap", "bad_format")
    if (w.get("serial"), w.get("kid")) != (identity["serial"], identity["kid"]):
        raise SigningError("key wrapped for box %r key %r, not %r key %r" % (
            w.get("serial"), w.get("kid"), identity["serial"], identity["kid"]), "wrong_box")
    if bytes.fromhex(w["image"]) != img.digest:
        raise SigningError("key wrap is for another image", "wrong_key")
    try:
        return aes_key_unwrap(kek(bytes.fromhex(identity["device_key"]), identity["serial"]),
                              bytes.fromhex(w["wrapped"]))
    except InvalidUnwrap:
        raise SigningError("key wrap does not open with this box's key (wrapped for another box)", "wrong_box")


def info_lines(img, root=None):
    """Every field of the image, one per line (for `fbtool image info`)."""
    out = ["header: magic %s format %d, manifest %d bytes, chunk table %d bytes, head %d bytes" % (
        MAGIC.decode(), FORMAT, len(img.manifest_bytes), 32 * len(img.table), img.head_size),
        "signed digest (what signatures and wraps name): %s" % img.digest.hex()]
    m = img.manifest
    for name in sorted(m):
        if name == "key_wrap":
            for k in sorted(m[name]):
                out.append("key_wrap.%s: %s" % (k, m[name][k]))
        elif name in ("created", "expires"):
            out.append("%s: %d (%s UTC)" % (name, m[name], time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(m[name]))))
        else:
            out.append("%s: %s" % (name, m[name]))
    out.append("ciphertext: %d bytes present" % len(img.ciphertext))
    for i, h in enumerate(img.table):
        out.append("chunk %d: offset %d sha256 %s" % (i, img.head_size + i * m["chunk_size"], h.hex()))
    for key_id, sig in img.sigs:
        state = ""
        if root is not None:
            pub = root.pubkeys.get(key_id)
            listed = key_id.hex() in root.role("image")["keys"]
            state = " — " + ("not an image key of root v%d" % root.version if not listed or pub is None else
                             "valid" if signing.keys.verify(pub, img.signed, sig) else "INVALID")
        out.append("signature: key %s, %d bytes%s" % (key_id.hex(), len(sig), state))
    return out
