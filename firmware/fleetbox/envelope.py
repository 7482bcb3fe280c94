"""The fleetbox AES-256 envelope, version 1 (box side). Specified in docs/envelope.md.

    envelope = header || IV (16) || AES-256-CBC(enc_key, IV, PKCS#7(plaintext)) || tag (32)
    header   = "FBE" | version=1 | kid u32 | seq u64 | ts u32 | content_type u8 | id_len u8 | device_id
    tag      = HMAC-SHA-256(mac_key, header || IV || ciphertext)

Keys come from the per-device master key K with HKDF-SHA-256 (RFC 5869), one pair
per key id and per direction ("up" = box -> cloud, "down" = cloud -> box), so an
envelope can never be reflected back to its sender.

API:
    derive_keys(key, kid, direction=UP) -> (enc_key, mac_key)
    seal(key, kid, device_id, seq, ts, plaintext, content_type=1, iv=None,
         direction=UP) -> bytes
    seal_to(write, key, kid, device_id, seq, ts, plaintext, content_type=1,
            iv=None, direction=UP, chunk=512) -> length      (streams, same bytes)
    sealed_len(plaintext_len, device_id_len) -> envelope length
    parse_header(data) -> dict(version, kid, seq, ts, content_type, device_id,
                               header_len)         (raises EnvelopeError)
    open_(key, data, direction=DOWN) -> (header dict, plaintext)
         key: 32 bytes, or a callable kid -> key|None     (raises EnvelopeError)
    hkdf_sha256(ikm, salt, info, length) -> bytes

The replay check of what open_() returns (seq strictly increasing) is the
caller's job: only it knows where the last sequence number is persisted.
"""
import struct

from fleetbox import port
from fleetbox.errors import FleetboxError

MAGIC = b"FBE"
VERSION = 1
SALT = b"fleetbox-envelope-v1"
UP = "up"
DOWN = "down"

CT_RECORDS = 1  # the uplink payload, CBOR (box -> cloud; docs/payload.md)

FIXED_LEN = 22  # header bytes before the device id
MAX_ID_LEN = 32
IV_LEN = 16
TAG_LEN = 32
MIN_LEN = FIXED_LEN + 1 + IV_LEN + 16 + TAG_LEN

_FMT = ">3sBIQIBB"  # magic, version, kid, seq, ts, content_type, id_len


class EnvelopeError(FleetboxError):
    """A rejected envelope; .reason is one of the short codes of docs/envelope.md."""

    def __init__(self, reason, msg=None):
        super().__init__(reason if msg is None else reason + ": " + msg)
        self.reason = reason


def hkdf_sha256(ikm, salt, info, length):
    """HKDF (RFC 5869) with HMAC-SHA-256."""
    if length > 255 * 32:
        raise ValueError("hkdf: length too large")
    prk = port.hmac_digest(salt, ikm, "sha256")
    out = bytearray()
    t = b""
    i = 1
    while len(out) < length:
        t = port.hmac_digest(prk, t + info + bytes((i,)), "sha256")
        out.extend(t)
        i += 1
    return bytes(out[:length])


def _labels(direction):
    if direction == UP:
        return b"up-enc", b"up-mac"
    if direction == DOWN:
        return b"down-enc", b"down-mac"
    raise ValueError("envelope: direction must be 'up' or 'down'")


def derive_keys(key, kid, direction=UP):
    """(enc_key, mac_key) for master key `key` (32 bytes), key id `kid`, direction."""
    if len(key) != 32:
        raise ValueError("envelope: master key must be 32 bytes")
    if not 0 <= kid <= 0xFFFFFFFF:
        raise ValueError("envelope: kid must be a uint32")
    enc_label, mac_label = _labels(direction)
    k = struct.pack(">I", kid)
    return (hkdf_sha256(key, SALT, enc_label + k, 32),
            hkdf_sha256(key, SALT, mac_label + k, 32))


def _device_id_bytes(device_id):
    b = device_id.encode() if isinstance(device_id, str) else bytes(device_id)
    if not 1 <= len(b) <= MAX_ID_LEN:
        raise ValueError("envelope: device id must be 1..%d bytes" % MAX_ID_LEN)
    for c in b:
        if c < 0x21 or c > 0x7E:
            raise ValueError("envelope: device id must be printable ASCII without spaces")
    return b


def _check(kid, device_id, seq, ts, content_type):
    did = _device_id_bytes(device_id)
    if not 0 <= seq <= 0xFFFFFFFFFFFFFFFF:
        raise ValueError("envelope: seq must be a uint64")
    if not 0 <= ts <= 0xFFFFFFFF:
        raise ValueError("envelope: ts must be a uint32")
    if not 1 <= content_type <= 255:
        raise ValueError("envelope: content type must be 1..255")
    return did


def _iv(iv):
    if iv is None:
        return port.urandom(IV_LEN)
    if len(iv) != IV_LEN:
        raise ValueError("envelope: iv must be 16 bytes")
    return bytes(iv)


def sealed_len(plaintext_len, device_id_len):
    """Length of the envelope of a plaintext_len-byte plaintext (e.g. for Content-Length)."""
    return FIXED_LEN + device_id_len + IV_LEN + 16 * (plaintext_len // 16 + 1) + TAG_LEN


def seal(key, kid, device_id, seq, ts, plaintext, content_type=CT_RECORDS, iv=None, direction=UP):
    """Encrypt-then-MAC `plaintext` (bytes-like) into one envelope (bytes).

    Builds the envelope in one buffer and encrypts it in place. iv is for test
    vectors only; normally a fresh random IV is drawn."""
    did = _check(kid, device_id, seq, ts, content_type)
    enc_key, mac_key = derive_keys(key, kid, direction)
    iv = _iv(iv)
    n = len(plaintext)
    pad = 16 - (n % 16)
    hlen = FIXED_LEN + len(did)
    c0 = hlen + IV_LEN            # ciphertext offset
    clen = n + pad
    out = bytearray(c0 + clen + TAG_LEN)
    struct.pack_into(_FMT, out, 0, MAGIC, VERSION, kid, seq, ts, content_type, len(did))
    mv = memoryview(out)
    mv[FIXED_LEN:hlen] = did
    mv[hlen:c0] = iv
    mv[c0:c0 + n] = plaintext
    for i in range(c0 + n, c0 + clen):
        out[i] = pad
    port.aes_cbc_encrypt_into(enc_key, iv, mv[c0:c0 + clen])
    mv[c0 + clen:] = port.hmac_digest(mac_key, mv[:c0 + clen], "sha256")
    return bytes(out)


def seal_to(write, key, kid, device_id, seq, ts, plaintext, content_type=CT_RECORDS, iv=None,
            direction=UP, chunk=512):
    """Like seal(), but hand the envelope to write() piece by piece (at most
    `chunk` bytes of ciphertext at a time), so that only the plaintext and one
    chunk are in memory. Same bytes as seal(). Returns the envelope length."""
    did = _check(kid, device_id, seq, ts, content_type)
    enc_key, mac_key = derive_keys(key, kid, direction)
    iv = _iv(iv)
    chunk = max(16, chunk - chunk % 16)
    head = bytearray(FIXED_LEN + len(did))
    struct.pack_into(_FMT, head, 0, MAGIC, VERSION, kid, seq, ts, content_type, len(did))
    head[FIXED_LEN:] = did
    mac = port.hmac_new(mac_key, "sha256")
    for part in (head, iv):
        mac.update(part)
        write(bytes(part))
    mv = memoryview(plaintext)
    n = len(mv)
    full = n - n % 16
    prev = iv
    pos = 0
    while pos < full:
        end = pos + chunk if pos + chunk < full else full
        ct = port.aes_cbc_encrypt(enc_key, prev, mv[pos:end])
        mac.update(ct)
        write(ct)
        prev = ct[-16:]
        pos = end
    pad = 16 - (n - full)
    ct = port.aes_cbc_encrypt(enc_key, prev, bytes(mv[full:]) + bytes((pad,)) * pad)
    mac.update(ct)
    write(ct)
    write(mac.digest())
    return sealed_len(n, len(did))


def parse_header(data):
    """The header fields of an envelope (not authenticated yet: for logging and key lookup)."""
    if len(data) < FIXED_LEN:
        raise EnvelopeError("malformed", "shorter than a header")
    magic, version, kid, seq, ts, ctype, idlen = struct.unpack_from(_FMT, data, 0)
    if magic != MAGIC:
        raise EnvelopeError("malformed", "bad magic")
    if version != VERSION:
        raise EnvelopeError("unsupported-version", "version %d" % version)
    if not 1 <= idlen <= MAX_ID_LEN:
        raise EnvelopeError("malformed", "device id length %d" % idlen)
    hlen = FIXED_LEN + idlen
    if len(data) < hlen:
        raise EnvelopeError("malformed", "truncated header")
    did = bytes(data[FIXED_LEN:hlen])
    for c in did:
        if c < 0x21 or c > 0x7E:
            raise EnvelopeError("malformed", "device id not printable ASCII")
    if ctype == 0:
        raise EnvelopeError("malformed", "content type 0")
    return {"version": version, "kid": kid, "seq": seq, "ts": ts, "content_type": ctype,
            "device_id": did.decode(), "header_len": hlen}


def open_(key, data, direction=DOWN):
    """Verify (MAC first, constant time), then decrypt one envelope.

    Returns (header dict, plaintext bytes); raises EnvelopeError."""
    hdr = parse_header(data)
    hlen = hdr["header_len"]
    c0 = hlen + IV_LEN
    clen = len(data) - c0 - TAG_LEN
    if clen < 16 or clen % 16:
        raise EnvelopeError("malformed", "ciphertext length %d" % clen)
    if callable(key):
        key = key(hdr["kid"])
        if key is None:
            raise EnvelopeError("unknown-key", "kid %d" % hdr["kid"])
    enc_key, mac_key = derive_keys(key, hdr["kid"], direction)
    mv = memoryview(data)
    tag = port.hmac_digest(mac_key, mv[:c0 + clen], "sha256")
    if not port.consteq(tag, mv[c0 + clen:]):
        raise EnvelopeError("bad-mac")
    pt = port.aes_cbc_decrypt(enc_key, mv[hlen:c0], mv[c0:c0 + clen])
    pad = pt[-1]
    if not 1 <= pad <= 16:
        raise EnvelopeError("bad-padding")
    r = 0
    for i in range(len(pt) - pad, len(pt)):
        r |= pt[i] ^ pad
    if r:
        raise EnvelopeError("bad-padding")
    return hdr, pt[:len(pt) - pad]
