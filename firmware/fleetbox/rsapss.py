"""RSASSA-PSS signature verification (RFC 8017 section 8.1.2), SHA-256, MGF1-SHA-256.

Pure Python on the runtime's big integers: with e = 65537 a 3072/4096-bit verify
is 17 modular multiplications, cheap enough for the box. Only verification lives
here: private keys never reach the box. The salt length is fixed at 32 bytes (the
hash length); anything else is refused, so a signature has exactly one valid form.
"""
import hashlib

from fleetbox.errors import FleetboxError

SALT_LEN = 32
HASH_LEN = 32
MIN_BITS = 3072
MAX_BITS = 4096


class BadKey(FleetboxError):
    """A public key that is not an RSA key this verifier accepts."""


def _der_item(der, pos):
    """(tag, start of contents, end of contents) of the DER TLV at pos."""
    if pos + 2 > len(der):
        raise BadKey("DER truncated")
    tag = der[pos]
    n = der[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 3 or pos + k > len(der):
            raise BadKey("DER length")
        n = 0
        for i in range(k):
            n = (n << 8) | der[pos + i]
        pos += k
    if pos + n > len(der):
        raise BadKey("DER truncated")
    return tag, pos, pos + n


_RSA_OID = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"  # 1.2.840.113549.1.1.1 rsaEncryption


def public_key_from_spki(der):
    """(n, e) of a DER SubjectPublicKeyInfo holding an rsaEncryption key."""
    tag, s, end = _der_item(der, 0)
    if tag != 0x30 or end != len(der):
        raise BadKey("not a SubjectPublicKeyInfo")
    tag, a, a_end = _der_item(der, s)            # AlgorithmIdentifier
    if tag != 0x30:
        raise BadKey("no algorithm identifier")
    tag, o, o_end = _der_item(der, a)
    if tag != 0x06 or bytes(der[o:o_end]) != _RSA_OID:
        raise BadKey("not an RSA key")
    tag, b, b_end = _der_item(der, a_end)        # BIT STRING
    if tag != 0x03 or b_end != end or der[b] != 0:
        raise BadKey("bad key bit string")
    tag, q, q_end = _der_item(der, b + 1)        # RSAPublicKey
    if tag != 0x30 or q_end != b_end:
        raise BadKey("bad RSAPublicKey")
    tag, i, i_end = _der_item(der, q)
    tag2, j, j_end = _der_item(der, i_end)
    if tag != 0x02 or tag2 != 0x02 or j_end != q_end:
        raise BadKey("bad RSAPublicKey integers")
    n = int.from_bytes(bytes(der[i:i_end]), "big")
    e = int.from_bytes(bytes(der[j:j_end]), "big")
    return public_key(n, e)


def bit_length(n):
    """int.bit_length(), which MicroPython's int lacks."""
    if hasattr(n, "bit_length"):
        return n.bit_length()
    b = 0
    while n >> (b + 256):
        b += 256
    while n >> b:
        b += 1
    return b


def public_key(n, e):
    """The key tuple verify() takes, (n, e, modulus bits), after checking n and e."""
    bits = bit_length(n)
    if bits < MIN_BITS or bits > MAX_BITS or not n & 1:
        raise BadKey("RSA modulus of %d bits (want %d..%d)" % (bits, MIN_BITS, MAX_BITS))
    if e != 65537:
        raise BadKey("RSA public exponent %d (want 65537)" % e)
    return n, e, bits


def _mgf1_xor(db, seed, length):
    """db[:length] ^= MGF1-SHA-256(seed, length), in place."""
    counter = 0
    pos = 0
    while pos < length:
        h = hashlib.sha256(seed)
        h.update(counter.to_bytes(4, "big"))
        mask = h.digest()
        for i in range(min(HASH_LEN, length - pos)):
            db[pos + i] ^= mask[i]
        pos += HASH_LEN
        counter += 1


def verify_digest(key, m_hash, signature):
    """True when signature is a valid RSASSA-PSS signature of the message whose
    SHA-256 is m_hash, under key (a public_key() tuple)."""
    n, e, bits = key
    k = (bits + 7) // 8
    if len(signature) != k or len(m_hash) != HASH_LEN:
        return False
    s = int.from_bytes(bytes(signature), "big")
    if s >= n:
        return False
    em_bits = bits - 1
    em_len = (em_bits + 7) // 8
    em = pow(s, e, n).to_bytes(em_len, "big") if em_len >= 1 else b""
    # EMSA-PSS-VERIFY, RFC 8017 section 9.1.2
    if em_len < HASH_LEN + SALT_LEN + 2 or em[-1] != 0xBC:
        return False
    db_len = em_len - HASH_LEN - 1
    db = bytearray(em[:db_len])
    h = em[db_len:db_len + HASH_LEN]
    top_mask = 0xFF >> (8 * em_len - em_bits)
    if db[0] & ~top_mask & 0xFF:
        return False
    _mgf1_xor(db, h, db_len)
    db[0] &= top_mask
    pad = db_len - SALT_LEN - 1
    for i in range(pad):
        if db[i]:
            return False
    if db[pad] != 1:
        return False
    m2 = hashlib.sha256(b"\x00" * 8)
    m2.update(m_hash)
    m2.update(db[db_len - SALT_LEN:])
    return m2.digest() == h


def verify(key, message, signature):
    """verify_digest over SHA-256(message)."""
    return verify_digest(key, hashlib.sha256(message).digest(), signature)
