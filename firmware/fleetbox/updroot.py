"""Update root metadata and signatures, verified on the box (docs/update-image.md).

The root lists the keys trusted to sign roots and images with a k-of-n threshold for
each; it is itself signed, and a new root must carry a threshold of the old root's keys
and of its own (rotation). Also here: every refusal (UpdateError and its subclasses,
each with a stable short `reason`) and the readers both the root and the image use.
fleetbox.updimage builds the image checks on this.
"""
import hashlib
import json
from binascii import hexlify, unhexlify

from fleetbox import rsapss
from fleetbox.errors import FleetboxError

ROOT_MAGIC = b"FBRT"
ROOT_FORMAT = 1

MAX_ROOT = 16384           # bytes of root JSON
MAX_SIGNATURES = 16


class UpdateError(FleetboxError):
    reason = "invalid"


class BadFormat(UpdateError):
    reason = "bad_format"


class Truncated(UpdateError):
    reason = "truncated"


class UnknownKey(UpdateError):
    reason = "unknown_key"


class BadSignature(UpdateError):
    reason = "bad_signature"


class ThresholdNotMet(UpdateError):
    reason = "threshold"


class Expired(UpdateError):
    reason = "expired"


class WrongBoard(UpdateError):
    reason = "wrong_board"


class OlderVersion(UpdateError):
    reason = "older_version"


class CounterRollback(UpdateError):
    reason = "security_counter"


class LoaderTooOld(UpdateError):
    reason = "loader_too_old"


class TooBig(UpdateError):
    reason = "too_big"


class BadChunk(UpdateError):
    reason = "bad_chunk"


class WrongBox(UpdateError):
    reason = "wrong_box"


class WrongKey(UpdateError):
    reason = "wrong_key"


class RootRollback(UpdateError):
    reason = "root_version"


def _u16(b, pos):
    return b[pos] | (b[pos + 1] << 8)


def _u32(b, pos):
    return b[pos] | (b[pos + 1] << 8) | (b[pos + 2] << 16) | (b[pos + 3] << 24)


def _read_exact(read, n, what):
    """n bytes from read(); a source may give fewer a call (a socket), only EOF truncates."""
    data = (read(n) or b"") if n else b""
    if len(data) < n:
        data = bytearray(data)
        while len(data) < n:
            part = read(n - len(data))
            if not part:
                raise Truncated("%s truncated (%d of %d bytes)" % (what, len(data), n))
            data.extend(part)
    return data


def _read_into(read, buf, what):
    """Fill buf from read() in pieces of at most 1 KB (no second buffer of buf's size)."""
    pos = 0
    while pos < len(buf):
        part = read(min(1024, len(buf) - pos))
        if not part:
            raise Truncated("%s truncated (%d of %d bytes)" % (what, pos, len(buf)))
        buf[pos:pos + len(part)] = part
        pos += len(part)


def _read_signatures(read):
    """[(key id bytes, signature bytes)] of a signature block."""
    count = _u16(_read_exact(read, 2, "signature block"), 0)
    if count == 0 or count > MAX_SIGNATURES:
        raise BadFormat("%d signatures (1..%d allowed)" % (count, MAX_SIGNATURES))
    sigs = []
    for _ in range(count):
        head = _read_exact(read, 34, "signature")
        size = _u16(head, 32)
        if size > 512:
            raise BadFormat("signature of %d bytes" % size)
        sigs.append((bytes(head[:32]), _read_exact(read, size, "signature")))
    return sigs


def _json(data, what):
    try:
        obj = json.loads(bytes(data))
    except ValueError:
        raise BadFormat("%s is not JSON" % what)
    if not isinstance(obj, dict):
        raise BadFormat("%s is not a JSON object" % what)
    return obj


def _int(obj, name, lo=0, hi=1 << 62):
    v = obj.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > hi:
        raise BadFormat("field %r: want an integer in %d..%d, got %r" % (name, lo, hi, v))
    return v


def _str(obj, name):
    v = obj.get(name)
    if not isinstance(v, str) or not v:
        raise BadFormat("field %r: want a string, got %r" % (name, v))
    return v


def _hexfield(obj, name, size):
    v = _str(obj, name)
    try:
        b = unhexlify(v)
    except ValueError:
        raise BadFormat("field %r is not hex" % name)
    if len(b) != size:
        raise BadFormat("field %r: want %d bytes, got %d" % (name, size, len(b)))
    return b


def _short(key_id):
    return hexlify(key_id[:8]).decode()


def check_signatures(digest, sigs, keys, role, what):
    """Require `role` = {"keys": [id hex], "threshold": k}: k valid signatures over
    digest by distinct keys of the role. keys: {id bytes: rsapss.public_key()}."""
    allowed = role["ids"]
    threshold = role["threshold"]
    valid, invalid, unknown = [], 0, []
    for key_id, sig in sigs:
        if key_id not in allowed:
            unknown.append(_short(key_id))
            continue
        if key_id in valid:
            continue
        if rsapss.verify_digest(keys[key_id], digest, sig):
            valid.append(key_id)
        else:
            invalid += 1
    if len(valid) >= threshold:
        return len(valid)
    if not valid and not invalid:
        raise UnknownKey("%s: signed only by keys the root does not list for it (%s)"
                         % (what, ", ".join(unknown)))
    if not valid:
        raise BadSignature("%s: no signature verifies (%d bad: altered or forged)" % (what, invalid))
    raise ThresholdNotMet("%s: %d valid signature(s) of %d required (%d bad, %d unknown key)"
                          % (what, len(valid), threshold, invalid, len(unknown)))


class Root:
    """Trusted root metadata: signing keys and the threshold of each role."""

    def __init__(self, body, digest):
        self.digest = digest
        if body.get("type") != "fleetbox-root":
            raise BadFormat("not root metadata (type %r)" % body.get("type"))
        self.version = _int(body, "version", 1)
        self.created = _int(body, "created")
        self.expires = _int(body, "expires")
        keys = body.get("keys")
        roles = body.get("roles")
        if not isinstance(keys, dict) or not isinstance(roles, dict):
            raise BadFormat("root without keys or roles")
        self.keys = {}
        for id_hex, spki_hex in keys.items():
            try:
                spki = unhexlify(spki_hex)
                key_id = unhexlify(id_hex)
            except (ValueError, TypeError):
                raise BadFormat("root key %r is not hex" % id_hex)
            if hashlib.sha256(spki).digest() != key_id:
                raise BadFormat("root key id %s is not the SHA-256 of its key" % id_hex[:16])
            try:
                self.keys[key_id] = rsapss.public_key_from_spki(spki)
            except rsapss.BadKey as e:
                raise BadFormat("root key %s: %s" % (id_hex[:16], e))
        self.roles = {}
        for name in ("root", "image"):
            role = roles.get(name)
            if not isinstance(role, dict) or not isinstance(role.get("keys"), list):
                raise BadFormat("root has no %r role" % name)
            ids = []
            for id_hex in role["keys"]:
                try:
                    key_id = unhexlify(id_hex)
                except (ValueError, TypeError):
                    key_id = None
                if key_id not in self.keys:
                    raise BadFormat("role %r names a key the root does not hold" % name)
                if key_id not in ids:
                    ids.append(key_id)
            k = _int(role, "threshold", 1, len(ids))
            self.roles[name] = {"ids": ids, "threshold": k}

    def check_fresh(self, min_time):
        if self.expires < min_time:
            raise Expired("root metadata version %d expired at %d (time is at least %d)"
                          % (self.version, self.expires, min_time))


def load_root(data, trusted=None, min_time=0):
    """Verify root metadata bytes; returns a Root.

    trusted=None: a first root (the factory trust anchor), which must carry a threshold of
    its own root keys. Otherwise data must be version trusted.version + 1 and signed by a
    threshold of trusted's root keys AND of its own (rotation). Chains are walked one
    version at a time; only the last one's expiry is held against min_time.
    """
    data = memoryview(data)
    if len(data) < 12:
        raise Truncated("root metadata truncated")
    if bytes(data[:4]) != ROOT_MAGIC or _u16(data, 4) != ROOT_FORMAT:
        raise BadFormat("not fleetbox root metadata (magic/format)")
    size = _u32(data, 8)
    if size > MAX_ROOT:
        raise BadFormat("root body of %d bytes" % size)
    if len(data) < 12 + size:
        raise Truncated("root metadata truncated")
    digest = hashlib.sha256(data[:12 + size]).digest()
    pos = [12 + size]

    def read(n):
        b = data[pos[0]:pos[0] + n]
        pos[0] += len(b)
        return b

    sigs = _read_signatures(read)
    if pos[0] != len(data):
        raise BadFormat("root metadata has %d stray bytes" % (len(data) - pos[0]))
    # signatures first, so no field of an unsigned body is believed
    if trusted is not None:
        check_signatures(digest, sigs, trusted.keys, trusted.roles["root"],
                         "root rotation (old root's keys)")
    root = Root(_json(data[12:12 + size], "root metadata"), digest)
    check_signatures(digest, sigs, root.keys, root.roles["root"],
                     "root metadata version %d (its own keys)" % root.version)
    if trusted is not None and root.version != trusted.version + 1:
        raise RootRollback("root version %d does not follow trusted version %d"
                           % (root.version, trusted.version))
    root.check_fresh(min_time)
    return root


MAX_ROTATIONS = 16         # links one offer may ask a box to walk
ROOTS_PATH = "/v1/updates/roots/"   # the update service's root metadata, by version


def trusted_root(anchor_path, rotated_path=None, log=None):
    """The newest root this box trusts: the factory anchor, or the newest rotation it accepted
    (rotated_path), which must still carry its own threshold and a newer version. Only the
    newest is kept (the loader partition has room for one): it was checked link by link when
    it came, and it sits on the same partition as the anchor, so it is trusted as much. One
    that no longer verifies leaves the anchor (the update service delivers the rotation again)."""
    with open(anchor_path, "rb") as f:
        root = load_root(f.read())
    if rotated_path is None:
        return root
    try:
        with open(rotated_path, "rb") as f:
            data = f.read()
    except OSError:
        return root
    try:
        newest = load_root(data)
        if newest.version <= root.version:
            raise RootRollback("stored root version %d is not past the anchor's %d" % (newest.version, root.version))
        return newest
    except UpdateError as e:
        if log is not None:
            log("stored root %s refused [%s]: %s" % (rotated_path, e.reason, e))
        return root


def rotate(trusted, fetch, upto, rotated_path, min_time=0):
    """Walk from `trusted` to root version `upto`: fetch(version) gives that root's metadata
    (or None); each link must pass load_root(new, previous), only the newest is held against
    min_time. The newest root that passed is stored at rotated_path (LittleFS commits a file
    on close: a cut leaves the one before). Returns it; raises the refusal of the first link
    that failed after storing the links before it."""
    if upto <= trusted.version:
        return trusted
    if upto - trusted.version > MAX_ROTATIONS:
        raise BadFormat("root version %d is %d rotations past %d" % (upto, upto - trusted.version, trusted.version))
    root, good = trusted, None
    try:
        for version in range(trusted.version + 1, upto + 1):
            data = fetch(version)
            if not data:
                raise Truncated("root metadata version %d not served" % version)
            root = load_root(data, root, min_time if version == upto else 0)
            good = data
    finally:
        if good is not None:
            _store(rotated_path, good)
    return root


def _write(path, data):
    from fleetbox import port    # only here: the loader's slot check needs none of it
    f = port.open_write(path, True)
    try:
        f.write(data)
    finally:
        port.close_write(f, path)


def _store(path, data):
    try:
        _write(path, data)
    except OSError:
        # No room for the new root beside the old one: drop the old first. A cut in between
        # leaves the anchor in force until the service delivers the rotation again.
        from fleetbox import port
        try:
            port.remove(path)
        except OSError:
            pass
        _write(path, data)


def fetcher(conn):
    """fetch(version) for rotate(): GET the update service's root metadata on an https.Connection."""
    def fetch(version):
        status, body = conn.request("GET", path=ROOTS_PATH + str(version))
        return body if status == 200 else None
    return fetch
