"""Streaming install of a signed update image into the inactive slot, resumable.

The image (docs/update-image.md) is fetched in ranges: its head first (verified by
fleetbox.updimage before any field is believed), then one chunk per request. Each chunk
is checked against the signed table before it is decrypted, and its plaintext, a
format-1 firmware image (docs/firmware-image.md), is unpacked straight into the slot's
files. After every chunk a resume record (chunk index and the last ciphertext block)
goes to flash, so a cut connection or a reboot continues at the next chunk. The
finished slot is read back and checked whole against the signed payload SHA-256 before
the boot state is switched. Memory: the chunk table and one chunk buffer (updimage),
whatever the image size. Protocol: docs/update-protocol.md.
"""
import gc
import hashlib
import json
import os
import struct
from binascii import hexlify, unhexlify

from fleetbox import atomicfile, port, updimage
from fleetbox.errors import FleetboxError
from fleetbox.updimage import BadChunk, BadFormat, Truncated, UpdateError

HEAD_FILE = ".head"          # the payload's format-1 header and manifest while they arrive
TAIL_FILE = "payload.tail"   # its trailing SHA-256: kept, so the slot re-hashes to the signed digest
SIG_FILE = "update.sig"      # the signed head of the .fbu: the loader checks the slot against it
MANIFEST_FILE = "manifest.json"
FBI_MAGIC = b"FBIM"
MAX_FBI_MANIFEST = 16384
HEAD_WINDOW = 2048           # bytes a head request asks for


def log(level, msg):
    port.log("update", level, msg)


class Refused(UpdateError):
    """An offer this box will not act on (reason codes as updimage's)."""
    reason = "offer"


class RangeSource:
    """An image on the update service, read by HTTP Range over one kept-alive connection."""

    def __init__(self, conn, path):
        self.conn = conn
        self.path = path

    def fetch(self, offset, length):
        from fleetbox.https import HttpError
        try:
            status, body = self.conn.request("GET", headers={"Range": "bytes=%d-%d" % (offset, offset + length - 1)},
                                             path=self.path)
        except OSError as e:
            self.conn.close()
            raise HttpError("download cut at byte %d (%r)" % (offset, e))
        if status == 416:
            return b""
        if status != 206:
            raise HttpError("range %d+%d of %s: HTTP %d" % (offset, length, self.path, status))
        return body

    def fetch_into(self, offset, buf):
        """Bytes offset.. straight into buf (a chunk): no body object, so a fragmented heap
        never has to find room for one. Returns how many bytes came."""
        from fleetbox import https
        conn = self.conn
        try:
            status, length, keep = conn.request_head("GET", {"Range": "bytes=%d-%d" % (offset, offset + len(buf) - 1)},
                                                     self.path)
            if status != 206 or length is None or length > len(buf):
                conn.close()
                raise https.HttpError("range %d+%d of %s: HTTP %d, %r bytes" % (offset, len(buf), self.path,
                                                                                 status, length))
            pos = 0
            while pos < length:
                n = conn.stream.readinto(buf[pos:length])
                if not n:
                    raise https.HttpError("download cut at byte %d" % (offset + pos))
                pos += n
        except OSError as e:
            conn.close()
            raise https.HttpError("download cut at byte %d (%r)" % (offset, e))
        except https.HttpError:
            conn.close()
            raise
        if not keep:
            conn.close()
        return length


class FileSource:
    """An image in a file (a USB stick, the rescue cache, tests)."""

    def __init__(self, path):
        self.path = path

    def fetch(self, offset, length):
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)


class _HeadReader:
    """read(n) over a source, a window at a time (the head's size is known only as it is parsed)."""

    def __init__(self, source):
        self.source = source
        self.pos = 0
        self.window = b""
        self.wpos = 0

    def __call__(self, n):
        if self.wpos >= len(self.window):
            self.window = self.source.fetch(self.pos, max(n, HEAD_WINDOW))
            self.wpos = 0
            if not self.window:
                return b""
        b = self.window[self.wpos:self.wpos + n]
        self.wpos += len(b)
        self.pos += len(b)
        return b


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def _truncate(path, size, buf):
    """Cut a file to size bytes (MicroPython files have no truncate): copy, then rename,
    through the port's file functions, so a flash fault on the slot is seen like any other."""
    def copy(dst):
        mv = memoryview(buf)
        with open(path, "rb") as src:
            left = size
            while left:
                n = src.readinto(mv[:min(left, len(buf))])
                if not n:
                    raise BadChunk("%s shorter than its resume record" % path)
                dst.write(mv[:n])
                left -= n
    atomicfile.atomic_write(path, copy, binary=True)


def _parse_fbi_head(head):
    """The manifest length M from the payload's 12-byte format-1 header."""
    if bytes(head[:4]) != FBI_MAGIC or head[4] | head[5] << 8 != 1:
        raise BadFormat("payload is not a format-1 firmware image")
    m = struct.unpack_from("<I", head, 8)[0]
    if m > MAX_FBI_MANIFEST:
        raise BadFormat("payload manifest of %d bytes" % m)
    return m


class SlotWriter:
    """Unpacks a format-1 image, as its bytes arrive in order, into the files of a slot
    mounted at `root`: regions head (12 + M bytes), each file, the 32-byte tail."""

    def __init__(self, root, board):
        self.root = root
        self.board = board
        self.regions = None      # [(path, size)], known once the head is in
        self.manifest = None
        self.f = None            # the open file of the region being written
        self.fpath = None
        self.fbi_header = bytearray(12)
        self.head_len = None

    def _path(self, name):
        return self.root + "/" + name

    def _load_head(self):
        with open(self._path(HEAD_FILE), "rb") as f:
            head = f.read()
        m = _parse_fbi_head(head)
        if len(head) != 12 + m:
            return False
        try:
            man = json.loads(head[12:])
            files = man["files"]
            regions = [(HEAD_FILE, 12 + m)]
            for ent in files:
                p = ent["path"]
                if not isinstance(p, str) or not p or p.startswith("/") or ".." in p or p[0] == ".":
                    raise BadFormat("file path %r" % p)
                regions.append((p, int(ent["size"])))
            regions.append((TAIL_FILE, 32))
        except (ValueError, KeyError, TypeError):
            raise BadFormat("payload manifest is not usable")
        if man.get("board") != self.board:
            raise updimage.WrongBoard("payload is for board %r" % man.get("board"))
        self.manifest = man
        self.regions = regions
        return True

    def _makedirs(self, name):
        parts = name.split("/")[:-1]
        path = self.root
        for p in parts:
            path += "/" + p
            try:
                os.mkdir(path)
            except OSError:
                pass

    def _open(self, name):
        """The region's file, open to append to."""
        if self.fpath != name:
            self.close()
            self._makedirs(name)
            self.f = port.open_append(self._path(name))
            self.fpath = name

    def close(self):
        if self.f is not None:
            f, path = self.f, self._path(self.fpath)
            self.f = self.fpath = None
            port.close_write(f, path)

    def flush(self):
        if self.f is not None:
            port.sync_write(self.f, self._path(self.fpath))

    def resume_at(self, pos, buf):
        """Make the slot hold exactly the payload's first pos bytes (after a reboot or a cut)."""
        self.close()
        if pos == 0:
            return
        if _size(self._path(HEAD_FILE)) < 12:
            raise BadChunk("slot lost its head")
        if not self._load_head_or_cut(pos, buf):
            return
        start = 0
        for name, size in self.regions:
            want = min(max(pos - start, 0), size)
            have = _size(self._path(name))
            if want == 0:
                if have >= 0:
                    port.remove(self._path(name))
            elif have < want:
                raise BadChunk("%s has %d bytes, the resume record says %d" % (name, have, want))
            elif have > want:
                _truncate(self._path(name), want, buf)
            start += size

    def _load_head_or_cut(self, pos, buf):
        with open(self._path(HEAD_FILE), "rb") as f:
            f.readinto(self.fbi_header)
        m = _parse_fbi_head(self.fbi_header)
        self.head_len = 12 + m
        if pos < 12 + m:
            have = _size(self._path(HEAD_FILE))
            if have < pos:
                raise BadChunk("head has %d bytes, the resume record says %d" % (have, pos))
            if have > pos:
                _truncate(self._path(HEAD_FILE), pos, buf)
            return False
        return self._load_head()

    def write(self, offset, data):
        """The sink of updimage.ImageReader.feed: payload bytes at offset, in order."""
        pos = 0
        n = len(data)
        while pos < n:
            at = offset + pos
            if self.regions is None:
                # Only the head region exists yet: its length is in its first 12 bytes.
                if at < 12:
                    take = min(12 - at, n - pos)
                    self.fbi_header[at:at + take] = data[pos:pos + take]
                else:
                    if self.head_len is None:
                        self.head_len = 12 + _parse_fbi_head(self.fbi_header)
                    take = min(self.head_len - at, n - pos)
                self._open(HEAD_FILE)
                self.f.write(data[pos:pos + take])
                pos += take
                if self.head_len is not None and at + take == self.head_len:
                    self.close()
                    self._load_head()
                continue
            start = 0
            for name, size in self.regions:
                if at < start + size:
                    take = min(start + size - at, n - pos)
                    self._open(name)
                    self.f.write(data[pos:pos + take])
                    pos += take
                    break
                start += size
            else:
                raise BadChunk("payload longer than its manifest says")

    def total(self):
        return sum(s for _, s in self.regions) if self.regions else None


class Installer:
    """One box's updater: an offer in, a staged slot (or a refusal) out.

    root: the trusted updroot.Root; identity: {"serial", "kid", "device_key"};
    slot: the inactive slot (see LfsSlot) whose files are at slot.path once mounted;
    state_dir: where the resume record lives (the data partition); policy: board,
    running version and counter, loader version, slot size, time floor.
    """

    def __init__(self, root, identity, slot, state_dir, board, version, counter, loader_version, min_time=0,
                 stage=None):
        self.root = root
        self.identity = identity
        self.slot = slot
        self.state_dir = state_dir
        self.board = board
        self.version = version
        self.counter = counter
        self.loader_version = loader_version
        self.min_time = min_time
        self.stage = stage           # stage(slot name, info) switches the boot state
        self.chunks_fetched = 0

    def _resume_path(self):
        return self.state_dir + "/update.resume"

    def load_resume(self):
        try:
            with open(self._resume_path()) as f:
                rec = json.load(f)
            if isinstance(rec.get("image"), str) and isinstance(rec.get("next"), int) and \
                    len(unhexlify(rec["iv"])) == 16 and rec.get("slot") == self.slot.name:
                return rec
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        return None

    def _save_resume(self, digest, index, iv, offer):
        rec = {"image": digest, "next": index, "iv": hexlify(iv).decode(), "slot": self.slot.name, "offer": offer}
        atomicfile.atomic_write(self._resume_path(), json.dumps(rec))

    def forget(self):
        atomicfile.remove_quietly(self._resume_path())

    def open_image(self, source, offer):
        """Fetch and verify the head; every policy refusal is raised here, before any write."""
        img = updimage.ImageReader(_HeadReader(source), self.root, self.board, min_time=self.min_time,
                                   slot_size=self.slot.size, loader_version=self.loader_version,
                                   check_version=updimage.no_rollback(self.version, self.counter))
        kind = getattr(self.slot, "kind", "app")      # an install target takes one kind: a slot apps, a pack area packs
        if img.manifest["kind"] != kind:
            raise updimage.WrongBoard("image of kind %r, this target takes %r" % (img.manifest["kind"], kind))
        want = offer.get("image")
        if want is not None and unhexlify(want) != img.digest:
            raise Refused("the offer names image %s, the service served %s"
                          % (want[:16], hexlify(img.digest[:8]).decode()))
        wrap = offer["wrap"]
        if isinstance(wrap, dict):
            wrap = json.dumps(wrap)
        img.unwrap(wrap.encode() if isinstance(wrap, str) else wrap, self.identity)
        return img

    def install(self, source, offer, progress=None):
        """Download, verify and unpack the offered image into the slot, then stage it.

        Returns the staged info {"digest", "counter", "version", "slot"}; raises an
        UpdateError (refusal: nothing is staged, the running firmware goes on) or
        OSError/HttpError (a cut: call again, it resumes).
        """
        if isinstance(offer.get("wrap"), (bytes, bytearray)):
            offer = dict(offer, wrap=bytes(offer["wrap"]).decode())     # kept with the resume record
        img = self.open_image(source, offer)
        digest_hex = hexlify(img.digest).decode()
        rec = self.load_resume()
        start = rec["next"] if rec and rec["image"] == digest_hex else 0
        writer = SlotWriter(self.slot.path, self.board)
        self.slot.mount(fresh=start == 0)
        try:
            finished = start == img.chunks and _size(self.slot.path + "/" + HEAD_FILE) < 0 and \
                _size(self.slot.path + "/" + MANIFEST_FILE) > 0
            if finished:
                # a cut after the slot was finished, before the switch: check it whole again and stage it
                log(port.INFO, "%s was whole in the slot before a cut: checking it again" % digest_hex[:16])
                try:
                    info = self.finished_slot(img)
                except (UpdateError, ValueError) as e:
                    log(port.WARN, "finished slot does not check (%s): starting over" % e)
                    finished = False
                    start = 0
                    self.slot.umount()
                    self.slot.mount(fresh=True)
            elif start:
                try:
                    self._resume_at(writer, start * img.chunk_size, img.work_buffer())
                    log(port.INFO, "resuming %s at chunk %d of %d" % (digest_hex[:16], start, img.chunks))
                except (UpdateError, ValueError) as e:
                    log(port.WARN, "resume record unusable (%s): starting over" % e)
                    self.slot.umount()
                    self.slot.mount(fresh=True)
                    writer = SlotWriter(self.slot.path, self.board)
                    start = 0
            last = bytearray(16)
            if start == 0:
                self._save_resume(digest_hex, 0, img.first_iv(), offer)
                img.start(0)
            elif start < img.chunks:
                img.start(start, unhexlify(rec["iv"]))
            # else: every chunk is in and only finishing the slot failed (flash): finish it now
            for i in range(start, img.chunks):
                buf = img.chunk_buffer(i)
                if hasattr(source, "fetch_into"):
                    got = source.fetch_into(img.chunk_offset(i), buf)
                    data = buf
                else:
                    data = source.fetch(img.chunk_offset(i), img.chunk_len(i))
                    got = len(data)
                if got != len(buf):
                    raise Truncated("chunk %d: %d of %d bytes" % (i, got, len(buf)))
                last[:] = data[-16:]          # the next chunk's IV: the ciphertext, before feed decrypts in place
                img.feed(i, data, writer.write)
                writer.flush()
                self.chunks_fetched += 1
                self._save_resume(digest_hex, i + 1, last, offer)
                del data
                if progress is not None:
                    progress(i + 1, img.chunks)
            writer.close()
            if not finished:
                log(port.INFO, "downloaded %d chunks of %s; checking the slot whole" % (img.chunks, digest_hex[:16]))
                if writer.total() != img.payload_size:
                    raise BadFormat("payload manifest sizes add up to %s, the image says %d"
                                    % (writer.total(), img.payload_size))
                info = self.finish_slot(img, source, writer)
        finally:
            writer.close()
            self.slot.umount()
            gc.collect()
        if self.stage is not None:
            self.stage(self.slot.name, info)
        self.forget()
        where = ("installed in %s" if hasattr(self.slot, "kind") else "staged in %s for a trial boot") % self.slot.name
        log(port.INFO, "%s %s %s" % (img.manifest["kind"], info["version"], where))
        return info

    def run(self, source, offer, progress=None):
        """install(), never raising: every outcome is logged and returned as the report the
        box sends the update service: {"image", "state": staged|refused|interrupted, ...}."""
        report = {"image": offer.get("image"), "state": "staged"}
        try:
            info = self.install(source, offer, progress)
            report["version"] = info["version"]
        except UpdateError as e:
            # the box keeps its firmware; a refused image is never resumed
            self.forget()
            log(port.WARN, "update refused [%s]: %s" % (e.reason, e))
            report.update(state="refused", reason=e.reason, detail=str(e)[:200])
        except (OSError, FleetboxError) as e:
            log(port.WARN, "update interrupted (it resumes at the next offer): %r" % e)
            rec = self.load_resume()
            report.update(state="interrupted", detail=repr(e)[:200], next_chunk=rec["next"] if rec else 0)
        return report

    @staticmethod
    def _resume_at(writer, pos, buf):
        """Cut the slot back to the resume record; a flash fault while cutting is tried once more,
        then left to the next attempt (an interruption): the bytes already in the slot are kept."""
        try:
            writer.resume_at(pos, buf)
        except OSError as e:
            log(port.WARN, "cutting the slot back failed (%r): once more" % e)
            writer.resume_at(pos, buf)

    def finished_slot(self, img):
        """The info of a slot finish_slot completed (manifest.json and update.sig written), checked whole again."""
        root = self.slot.path + "/"
        info = verify_unpacked(self.slot.path, img.payload_sha256(), img.work_buffer(), MANIFEST_FILE)
        h = hashlib.sha256()
        with open(root + MANIFEST_FILE, "rb") as f:
            mbytes = f.read()
        h.update(mbytes)
        if json.loads(mbytes).get("version") != img.manifest["version"]:
            raise BadFormat("installed version is not the signed one")
        _check_sig_file(root + SIG_FILE, img)
        return {"digest": h.digest(), "counter": img.manifest["security_counter"],
                "version": img.manifest["version"], "slot": self.slot.name, "files": info}

    def finish_slot(self, img, source, writer):
        """Check the slot whole (every file against the manifest, the payload against the
        signed SHA-256), then write what the loader verifies it by."""
        info = verify_unpacked(self.slot.path, img.payload_sha256(), img.work_buffer())
        man = writer.manifest
        if man.get("version") != img.manifest["version"]:
            raise BadFormat("payload version %r, manifest %r" % (man.get("version"), img.manifest["version"]))
        root = self.slot.path + "/"
        with open(root + HEAD_FILE, "rb") as f:
            f.seek(12)
            mbytes = f.read()
        atomicfile.atomic_write(root + SIG_FILE, lambda f: _copy_head(source, img, f), binary=True)
        atomicfile.atomic_write(root + MANIFEST_FILE, mbytes)
        port.remove(root + HEAD_FILE)
        return {"digest": hashlib.sha256(mbytes).digest(), "counter": img.manifest["security_counter"],
                "version": img.manifest["version"], "slot": self.slot.name, "files": info}


def _copy_head(source, img, f):
    """The signed head into the slot, a window at a time, checked against the digest it had."""
    h = hashlib.sha256()
    signed = None
    pos = 0
    while pos < img.head_size:
        part = source.fetch(pos, min(HEAD_WINDOW, img.head_size - pos))
        if not part:
            raise Truncated("signed head: %d of %d bytes" % (pos, img.head_size))
        if signed is None:
            m, t = struct.unpack_from("<II", part, 8)
            signed = 16 + m + t
        h.update(part[:max(0, signed - pos)])
        f.write(part)
        pos += len(part)
    if h.digest() != img.digest:
        raise Truncated("signed head changed between two reads")


def _check_sig_file(path, img):
    """The slot's update.sig is the signed head the image was verified by."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        head = f.read(16)
        if len(head) < 16:
            raise Truncated("%s: %d bytes" % (path, len(head)))
        m, t = struct.unpack_from("<II", head, 8)
        h.update(head)
        left = m + t
        while left:
            part = f.read(min(left, HEAD_WINDOW))
            if not part:
                raise Truncated("%s shorter than its head" % path)
            h.update(part)
            left -= len(part)
    if h.digest() != img.digest:
        raise BadChunk("%s is not the signed head of this image" % path)


def verify_unpacked(root, payload_sha, buf, head_name=HEAD_FILE):
    """Re-hash a slot's unpacked payload: every file against its manifest entry and the
    whole against the signed payload SHA-256. Returns the number of files."""
    whole = hashlib.sha256()
    with open(root + "/" + head_name, "rb") as f:
        if head_name == HEAD_FILE:
            head = f.read()
        else:       # an installed slot: its manifest.json, behind the header it came with
            body = f.read()
            head = FBI_MAGIC + struct.pack("<HHI", 1, 0, len(body)) + body
    whole.update(head)
    whole_fbi = hashlib.sha256(head)
    try:
        man = json.loads(head[12:])
    except ValueError:
        raise BadFormat("payload manifest is not JSON")
    mv = memoryview(buf)
    for ent in man["files"]:
        h = hashlib.sha256()
        size = 0
        with open(root + "/" + ent["path"], "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(mv[:n])
                whole.update(mv[:n])
                whole_fbi.update(mv[:n])
                size += n
        if size != ent["size"] or h.digest() != unhexlify(ent["sha256"]):
            raise BadChunk("installed %s does not match its manifest entry" % ent["path"])
    with open(root + "/" + TAIL_FILE, "rb") as f:
        tail = f.read()
    if tail != whole_fbi.digest():
        raise BadChunk("installed payload does not match its own digest")
    whole.update(tail)
    if whole.digest() != payload_sha:
        raise BadChunk("installed slot does not match the signed payload SHA-256")
    return len(man["files"])


class LfsSlot:
    """The inactive slot's partition, formatted and mounted at path while it is written."""

    def __init__(self, name, dev, path="/upd"):
        self.name = name
        self.dev = dev
        self.path = path
        self.size = dev.ioctl(4, 0) * dev.ioctl(5, 0) * 7 // 8    # LittleFS's metadata takes the rest
        self.mounted = False

    def mount(self, fresh=False):
        port.mount_lfs(self.dev, self.path, fresh)
        self.mounted = True

    def umount(self):
        if self.mounted:
            port.umount(self.path)
            self.mounted = False
