"""fleetbox.envelope (box side) against docs/vectors/envelope-v1.json.

Runs under pytest on CPython and under tests/mprun.py on MicroPython.
"""
import json
from binascii import hexlify, unhexlify

from check import raises
from fleetbox import envelope

BOX_REASONS = ("malformed", "unsupported-version", "unknown-key", "bad-mac", "bad-padding")


def _hex(b):
    return hexlify(b).decode()


def _vectors():
    f = __file__.replace("\\", "/")
    d = f.rsplit("/", 1)[0] if "/" in f else "."
    with open(d + "/../../docs/vectors/envelope-v1.json") as fh:
        return json.load(fh)


V = _vectors()
KEYS = {}
for _k in V["keys"]:
    KEYS[(_k["device_id"], _k["kid"])] = unhexlify(_k["key"])


def _lookup(data):
    """A key callable for open_(): the vector keys of the envelope's device."""
    try:
        did = envelope.parse_header(data)["device_id"]
    except envelope.EnvelopeError:
        did = None
    return lambda kid: KEYS.get((did, kid))


def test_hkdf_rfc5869_case1():
    ikm = b"\x0b" * 22
    salt = unhexlify("000102030405060708090a0b0c")
    info = unhexlify("f0f1f2f3f4f5f6f7f8f9")
    okm = envelope.hkdf_sha256(ikm, salt, info, 42)
    assert _hex(okm) == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def test_hkdf_rfc5869_case3_empty_salt_info():
    okm = envelope.hkdf_sha256(b"\x0b" * 22, b"", b"", 42)
    assert _hex(okm) == ("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
                         "9d201395faa4b61a96c8")


def test_vectors_derive_keys():
    for v in V["valid"]:
        enc, mac = envelope.derive_keys(unhexlify(v["key"]), v["kid"], v["direction"])
        assert _hex(enc) == v["enc_key"], v["name"]
        assert _hex(mac) == v["mac_key"], v["name"]


def test_vectors_seal():
    for v in V["valid"]:
        env = envelope.seal(unhexlify(v["key"]), v["kid"], v["device_id"], v["seq"], v["ts"],
                            unhexlify(v["plaintext"]), v["content_type"], unhexlify(v["iv"]),
                            v["direction"])
        assert _hex(env) == v["envelope"], v["name"]


def test_vectors_open_and_parse():
    for v in V["valid"]:
        data = unhexlify(v["envelope"])
        hdr = envelope.parse_header(data)
        assert hdr["version"] == 1
        assert hdr["kid"] == v["kid"] and hdr["seq"] == v["seq"] and hdr["ts"] == v["ts"]
        assert hdr["content_type"] == v["content_type"] and hdr["device_id"] == v["device_id"]
        assert hdr["header_len"] == 22 + len(v["device_id"])
        hdr2, pt = envelope.open_(unhexlify(v["key"]), data, v["direction"])
        assert hdr2 == hdr
        assert _hex(pt) == v["plaintext"], v["name"]
        # with a kid -> key callable
        hdr3, pt3 = envelope.open_(_lookup(data), data, v["direction"])
        assert pt3 == pt
        # the other direction's keys never open it
        other = envelope.DOWN if v["direction"] == envelope.UP else envelope.UP
        e = raises(envelope.EnvelopeError, envelope.open_, unhexlify(v["key"]), data, other)
        assert e.reason == "bad-mac"


def test_vectors_invalid():
    n = 0
    for v in V["invalid"]:
        if v["reason"] not in BOX_REASONS:
            continue  # time window and replay are the caller's checks
        data = unhexlify(v["envelope"])
        e = raises(envelope.EnvelopeError, envelope.open_, _lookup(data), data, envelope.UP)
        assert e.reason == v["reason"], (v["name"], e.reason)
        assert isinstance(e, ValueError)
        n += 1
    assert n >= 10


def test_seal_open_roundtrip_sizes():
    key = bytes(range(32))
    for n in (0, 1, 15, 16, 17, 31, 32, 33, 255, 1000):
        pt = bytes((i * 7) & 0xFF for i in range(n))
        env = envelope.seal(key, 5, "FB-1", n, 1700000000, pt, direction=envelope.DOWN)
        assert len(env) == 22 + 4 + 16 + 16 * (n // 16 + 1) + 32
        hdr, out = envelope.open_(key, env)
        assert out == pt and hdr["seq"] == n and hdr["kid"] == 5
    # byte-like plaintexts
    env = envelope.seal(key, 1, b"FB-1", 1, 0, bytearray(b"abc"))
    assert envelope.open_(key, env, envelope.UP)[1] == b"abc"
    env = envelope.seal(key, 1, "FB-1", 1, 0, memoryview(b"xabcx")[1:4])
    assert envelope.open_(key, env, envelope.UP)[1] == b"abc"


def test_random_iv():
    key = bytes(32)
    a = envelope.seal(key, 1, "FB-1", 1, 0, b"same")
    b = envelope.seal(key, 1, "FB-1", 1, 0, b"same")
    assert a != b and a[:26] == b[:26]
    assert envelope.open_(key, a, "up")[1] == envelope.open_(key, b, "up")[1] == b"same"


def test_max_values():
    key = bytes(32)
    did = "X" * 32
    env = envelope.seal(key, 0xFFFFFFFF, did, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF, b"", 255)
    hdr, pt = envelope.open_(key, env, "up")
    assert (hdr["kid"], hdr["seq"], hdr["ts"], hdr["content_type"]) == \
        (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF, 255)
    assert hdr["device_id"] == did and pt == b""


def test_seal_rejects_bad_arguments():
    key = bytes(32)
    raises(ValueError, envelope.seal, bytes(16), 1, "FB-1", 1, 0, b"")
    raises(ValueError, envelope.seal, key, -1, "FB-1", 1, 0, b"")
    raises(ValueError, envelope.seal, key, 2 ** 32, "FB-1", 1, 0, b"")
    raises(ValueError, envelope.seal, key, 1, "", 1, 0, b"")
    raises(ValueError, envelope.seal, key, 1, "X" * 33, 1, 0, b"")
    raises(ValueError, envelope.seal, key, 1, "FB 1", 1, 0, b"")
    raises(ValueError, envelope.seal, key, 1, "FB-\u00e9", 1, 0, b"")
    raises(ValueError, envelope.seal, key, 1, "FB-1", -1, 0, b"")
    raises(ValueError, envelope.seal, key, 1, "FB-1", 2 ** 64, 0, b"")
    raises(ValueError, envelope.seal, key, 1, "FB-1", 1, -1, b"")
    raises(ValueError, envelope.seal, key, 1, "FB-1", 1, 2 ** 32, b"")
    raises(ValueError, envelope.seal, key, 1, "FB-1", 1, 0, b"", 0)
    raises(ValueError, envelope.seal, key, 1, "FB-1", 1, 0, b"", 256)
    raises(ValueError, envelope.seal, key, 1, "FB-1", 1, 0, b"", 1, bytes(15))
    raises(ValueError, envelope.seal, key, 1, "FB-1", 1, 0, b"", 1, None, "sideways")


def test_every_truncation_and_byte_flip_rejected():
    key = bytes(range(32))
    env = envelope.seal(key, 3, "FB-7", 9, 1700000000, b"0123456789abcdefXYZ", direction="down")
    for n in range(len(env)):
        e = raises(envelope.EnvelopeError, envelope.open_, key, env[:n])
        assert e.reason in ("malformed", "bad-mac"), (n, e.reason)
    for i in range(len(env)):
        b = bytearray(env)
        b[i] ^= 0x41
        e = raises(envelope.EnvelopeError, envelope.open_, key, bytes(b))
        assert e.reason in ("malformed", "bad-mac", "unsupported-version"), (i, e.reason)
    e = raises(envelope.EnvelopeError, envelope.open_, lambda kid: None, env)
    assert e.reason == "unknown-key"


def test_parse_header_errors():
    raises(envelope.EnvelopeError, envelope.parse_header, b"")
    raises(envelope.EnvelopeError, envelope.parse_header, b"FBE")
    e = raises(envelope.EnvelopeError, envelope.parse_header, b"FBE\x02" + bytes(40))
    assert e.reason == "unsupported-version"
    e = raises(envelope.EnvelopeError, envelope.parse_header, b"XBE\x01" + bytes(40))
    assert e.reason == "malformed"


def test_seal_to_streams_same_bytes():
    from fleetbox import port
    key = bytes(range(32))
    iv = bytes(range(16))
    for n in (0, 1, 15, 16, 17, 47, 48, 100, 1000):
        pt = bytes((i * 13) & 0xFF for i in range(n))
        ref = envelope.seal(key, 2, "FBX-9", 77, 1700000000, pt, 1, iv)
        for chunk in (1, 16, 32, 40, 512):
            parts = []
            total = envelope.seal_to(parts.append, key, 2, "FBX-9", 77, 1700000000, pt, 1, iv, chunk=chunk)
            assert b"".join(parts) == ref, (n, chunk)
            assert total == len(ref) == envelope.sealed_len(n, 5)
            if n > 2 * chunk:
                assert max(len(p) for p in parts) <= max(16, chunk - chunk % 16) + 16
    for v in V["valid"]:
        out = bytearray()
        envelope.seal_to(out.extend, unhexlify(v["key"]), v["kid"], v["device_id"], v["seq"], v["ts"],
                         unhexlify(v["plaintext"]), v["content_type"], unhexlify(v["iv"]), v["direction"])
        assert _hex(out) == v["envelope"], v["name"]
    # and the incremental HMAC it uses agrees with the one-shot one
    m = port.hmac_new(b"k" * 70)
    m.update(b"abc")
    m.update(b"")
    m.update(b"def")
    assert m.digest() == port.hmac_digest(b"k" * 70, b"abcdef")
