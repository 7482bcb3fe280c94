"""AES key wrap (RFC 3394) and HKDF-SHA-256 (RFC 5869): how an update's content key
reaches exactly one box (docs/update-image.md, "Key wrap").

unwrap() is what the box runs; wrap() exists for tests and for the host's vectors.
"""
from fleetbox import port
from fleetbox.errors import FleetboxError

IV = b"\xa6\xa6\xa6\xa6\xa6\xa6\xa6\xa6"


class UnwrapError(FleetboxError):
    """The wrapped key fails RFC 3394's integrity check: another KEK (another box) wrapped it,
    or it was altered."""


def _xor_t(a, t):
    """a (8 bytes) XOR the 64-bit big-endian counter t."""
    tb = t.to_bytes(8, "big")
    return bytes(a[i] ^ tb[i] for i in range(8))


def wrap(kek, key):
    """RFC 3394 section 2.2.1: wrap key (a multiple of 8 bytes, at least 16) under kek."""
    n = len(key) // 8
    if len(key) % 8 or n < 2:
        raise ValueError("key to wrap must be 16+ bytes, a multiple of 8")
    enc = port.aes_ecb_encryptor(kek)
    a = IV
    r = [bytes(key[8 * i:8 * i + 8]) for i in range(n)]
    for j in range(6):
        for i in range(n):
            b = enc(a + r[i])
            a = _xor_t(b[:8], n * j + i + 1)
            r[i] = b[8:]
    return a + b"".join(r)


def unwrap(kek, wrapped):
    """RFC 3394 section 2.2.2: the key wrapped under kek; UnwrapError if the check fails."""
    n = len(wrapped) // 8 - 1
    if len(wrapped) % 8 or n < 2:
        raise UnwrapError("wrapped key of %d bytes" % len(wrapped))
    dec = port.aes_ecb_decryptor(kek)
    a = bytes(wrapped[:8])
    r = [bytes(wrapped[8 * i + 8:8 * i + 16]) for i in range(n)]
    for j in range(5, -1, -1):
        for i in range(n - 1, -1, -1):
            b = dec(_xor_t(a, n * j + i + 1) + r[i])
            a = b[:8]
            r[i] = b[8:]
    if not port.consteq(a, IV):
        raise UnwrapError("key unwrap integrity check failed")
    return b"".join(r)


def hkdf_sha256(ikm, info, length=32, salt=b""):
    """RFC 5869 HKDF with HMAC-SHA-256 (empty salt = 32 zero bytes)."""
    prk = port.hmac_digest(salt or b"\x00" * 32, ikm)
    out = b""
    t = b""
    i = 1
    while len(out) < length:
        t = port.hmac_digest(prk, t + info + bytes((i,)))
        out += t
        i += 1
    return out[:length]
