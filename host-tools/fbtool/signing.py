"""Root metadata (keys and k-of-n thresholds, signed) and signature blocks (docs/update-image.md).

The host side uses `cryptography`; the box verifies the same bytes with its own code
(firmware/fleetbox/updimage.py), and the vectors in docs/vectors/ hold both to one format.
"""
import hashlib
import json
import struct
import time

from . import keys
from .keys import SigningError  # noqa: F401 (the error of this module)

ROOT_MAGIC = b"FBRT"
ROOT_FORMAT = 1
MAX_SIGNATURES = 16
ROLES = ("root", "image")


def canonical(obj):
    """The JSON bytes fbtool signs: sorted keys, no spaces, ASCII (signatures cover
    these exact bytes; a verifier never re-encodes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def signature_block(message, private_keys):
    """u16 count, then per signature: 32-byte key id, u16 length, RSASSA-PSS signature."""
    if not private_keys or len(private_keys) > MAX_SIGNATURES:
        raise SigningError("sign with 1..%d keys, not %d" % (MAX_SIGNATURES, len(private_keys)))
    out = [struct.pack("<H", len(private_keys))]
    for key in private_keys:
        sig = keys.sign(key, message)
        out.append(keys.key_id(key.public_key()) + struct.pack("<H", len(sig)) + sig)
    return b"".join(out)


def parse_signatures(data, pos):
    """([(key id, signature)], end position) of the block at data[pos:]."""
    if pos + 2 > len(data):
        raise SigningError("signature block truncated", "truncated")
    (count,) = struct.unpack_from("<H", data, pos)
    if not 1 <= count <= MAX_SIGNATURES:
        raise SigningError("%d signatures (1..%d allowed)" % (count, MAX_SIGNATURES), "bad_format")
    pos += 2
    sigs = []
    for _ in range(count):
        if pos + 34 > len(data):
            raise SigningError("signature truncated", "truncated")
        key_id = data[pos:pos + 32]
        (size,) = struct.unpack_from("<H", data, pos + 32)
        if size > 512:
            raise SigningError("signature of %d bytes" % size, "bad_format")
        sig = data[pos + 34:pos + 34 + size]
        if len(sig) != size:
            raise SigningError("signature truncated", "truncated")
        sigs.append((key_id, sig))
        pos += 34 + size
    return sigs, pos


def check_signatures(message, sigs, pubkeys, role, what):
    """Require role's threshold of valid signatures by distinct keys of role.
    pubkeys: {id: public key}; role: {"keys": [id hex], "threshold": k}. Returns the
    ids that signed validly."""
    allowed = [bytes.fromhex(i) for i in role["keys"]]
    valid, invalid, unknown = [], 0, []
    for key_id, sig in sigs:
        if key_id not in allowed:
            unknown.append(key_id.hex()[:16])
        elif key_id not in valid:
            if keys.verify(pubkeys[key_id], message, sig):
                valid.append(key_id)
            else:
                invalid += 1
    if len(valid) >= role["threshold"]:
        return valid
    if not valid and not invalid:
        raise SigningError("%s: signed only by keys the root does not list for it (%s)"
                           % (what, ", ".join(unknown)), "unknown_key")
    if not valid:
        raise SigningError("%s: no signature verifies (%d bad: altered or forged)" % (what, invalid),
                           "bad_signature")
    raise SigningError("%s: %d valid signature(s) of %d required (%d bad, %d unknown key)"
                       % (what, len(valid), role["threshold"], invalid, len(unknown)), "threshold")


def _role(key_list, threshold, name):
    ids = []
    for k in key_list:
        kid = keys.key_id(k).hex()
        if kid not in ids:
            ids.append(kid)
    if not 1 <= threshold <= len(ids):
        raise SigningError("%s threshold %d of %d keys" % (name, threshold, len(ids)))
    return {"keys": ids, "threshold": threshold}


def root_body(version, root_keys, root_threshold, image_keys, image_threshold, expires, created=None):
    """The root metadata document (public keys in, JSON-ready dict out)."""
    held = {}
    for k in list(root_keys) + list(image_keys):
        held[keys.key_id(k).hex()] = keys.spki_der(k).hex()
    return {
        "type": "fleetbox-root",
        "version": version,
        "created": int(time.time()) if created is None else created,
        "expires": expires,
        "keys": held,
        "roles": {"root": _role(root_keys, root_threshold, "root"),
                  "image": _role(image_keys, image_threshold, "image")},
    }


def signed_root(body, signers):
    data = canonical(body)
    head = ROOT_MAGIC + struct.pack("<HHI", ROOT_FORMAT, 0, len(data)) + data
    return head + signature_block(head, signers)


class Root:
    """Parsed root metadata: body dict, public keys by id, the signed bytes and signatures."""

    def __init__(self, data):
        if len(data) < 12:
            raise SigningError("root metadata truncated", "truncated")
        magic, fmt, _, size = struct.unpack_from("<4sHHI", data)
        if magic != ROOT_MAGIC or fmt != ROOT_FORMAT:
            raise SigningError("not fleetbox root metadata (magic %r format %d)" % (magic, fmt), "bad_format")
        if len(data) < 12 + size:
            raise SigningError("root metadata truncated", "truncated")
        self.signed = data[:12 + size]
        self.sigs, end = parse_signatures(data, 12 + size)
        if end != len(data):
            raise SigningError("root metadata has %d stray bytes" % (len(data) - end), "bad_format")
        try:
            self.body = json.loads(data[12:12 + size])
        except ValueError:
            raise SigningError("root metadata is not JSON", "bad_format")
        if not isinstance(self.body, dict) or self.body.get("type") != "fleetbox-root":
            raise SigningError("not root metadata", "bad_format")
        try:
            self._check_body()
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SigningError("root metadata body: missing or malformed %s" % e, "bad_format")

    def _check_body(self):
        for name in ("version", "created", "expires"):
            if not isinstance(self.body[name], int):
                raise TypeError(name)
        self.pubkeys = {}
        for kid, spki in self.body["keys"].items():
            der = bytes.fromhex(spki)
            if hashlib.sha256(der).hexdigest() != kid:
                raise SigningError("root key id %s is not the SHA-256 of its key" % kid[:16], "bad_format")
            self.pubkeys[bytes.fromhex(kid)] = keys.public_from_spki(der)
        for name in ROLES:
            role = self.body["roles"].get(name)
            if not role or not all(bytes.fromhex(i) in self.pubkeys for i in role["keys"]):
                raise SigningError("root role %r missing or names an absent key" % name, "bad_format")
            if not 1 <= role["threshold"] <= len(set(role["keys"])):
                raise SigningError("root role %r threshold %r" % (name, role["threshold"]), "bad_format")

    @property
    def version(self):
        return self.body["version"]

    @property
    def digest(self):
        return hashlib.sha256(self.signed).digest()

    def role(self, name):
        return self.body["roles"][name]


def verify_root(data, trusted=None, min_time=0):
    """Root from data, checked as the box does: its own root threshold; with trusted,
    the old root's threshold too and version = trusted's + 1; expiry against min_time."""
    root = Root(data)
    if trusted is not None:
        check_signatures(root.signed, root.sigs, trusted.pubkeys, trusted.role("root"),
                         "root rotation (old root's keys)")
    check_signatures(root.signed, root.sigs, root.pubkeys, root.role("root"),
                     "root metadata version %d (its own keys)" % root.version)
    if trusted is not None and root.version != trusted.version + 1:
        raise SigningError("root version %d does not follow trusted version %d"
                           % (root.version, trusted.version), "root_version")
    if root.body["expires"] < min_time:
        raise SigningError("root metadata version %d expired at %d (time is at least %d)"
                           % (root.version, root.body["expires"], min_time), "expired")
    return root


def verify_chain(anchor_data, chain_data, min_time=0):
    """Walk from a trusted anchor through successive rotations; the last root is returned
    and is the only one whose expiry counts."""
    root = verify_root(anchor_data, None, 0 if chain_data else min_time)
    for i, data in enumerate(chain_data):
        root = verify_root(data, root, min_time if i == len(chain_data) - 1 else 0)
    return root


def rotate(old, new_root_keys, root_threshold, new_image_keys, image_threshold, expires, signers,
           created=None):
    """New root metadata, version old+1, signed by signers; refused unless they meet both
    the old root's threshold and the new one's."""
    body = root_body(old.version + 1, new_root_keys, root_threshold, new_image_keys, image_threshold,
                     expires, created)
    data = signed_root(body, signers)
    verify_root(data, old)
    return data
