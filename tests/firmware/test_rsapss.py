"""fleetbox.rsapss: RSASSA-PSS (SHA-256, MGF1, salt 32) against docs/vectors/update/expected.json.

Runs under pytest on CPython and under tests/mprun.py on MicroPython.
"""
import hashlib
from binascii import unhexlify

from check import raises
from fleetbox import rsapss
from vectors import expected

PSS = expected()["pss"]
MSG = unhexlify(PSS["message"])


def _key(name):
    return rsapss.public_key_from_spki(unhexlify(PSS[name]))


def test_valid_signatures_verify_3072_and_4096():
    k1 = _key("k1_spki")
    k3 = _key("k3_spki")
    assert k1[2] == 3072 and k3[2] == 4096 and k1[1] == 65537
    assert rsapss.verify(k1, MSG, unhexlify(PSS["k1_sig"]))
    assert rsapss.verify(k3, MSG, unhexlify(PSS["k3_sig"]))
    assert rsapss.verify_digest(k1, hashlib.sha256(MSG).digest(), unhexlify(PSS["k1_sig"]))


def test_other_message_key_or_flipped_bit_fails():
    k1 = _key("k1_spki")
    k3 = _key("k3_spki")
    sig = unhexlify(PSS["k1_sig"])
    assert not rsapss.verify(k1, MSG + b".", sig)
    assert not rsapss.verify(k3, MSG, unhexlify(PSS["k3_sig"])[:-1] + b"\x00")
    for pos in (0, 100, len(sig) - 1):
        bad = bytearray(sig)
        bad[pos] ^= 0x01
        assert not rsapss.verify(k1, MSG, bytes(bad))
    assert not rsapss.verify(k3, MSG, sig)                       # wrong length for the key
    assert not rsapss.verify(k1, MSG, b"\xff" * len(sig))         # s >= n
    assert not rsapss.verify(k1, MSG, b"")


def test_other_salt_length_is_refused():
    # a valid PSS signature with a 20-byte salt: the format fixes 32, so it must fail
    assert not rsapss.verify(_key("k1_spki"), MSG, unhexlify(PSS["k1_sig_salt20"]))


def _der(tag, body):
    n = len(body)
    if n < 0x80:
        head = bytes((tag, n))
    elif n < 0x100:
        head = bytes((tag, 0x81, n))
    else:
        head = bytes((tag, 0x82, n >> 8, n & 0xFF))
    return head + body


def _spki(n, e):
    def integer(v):
        b = v.to_bytes((rsapss.bit_length(v) + 8) // 8, "big")
        return _der(0x02, b)
    alg = _der(0x30, _der(0x06, b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01") + b"\x05\x00")
    return _der(0x30, alg + _der(0x03, b"\x00" + _der(0x30, integer(n) + integer(e))))


def test_spki_parser_round_trip_and_refusals():
    n, e, bits = _key("k1_spki")
    assert _spki(n, e) == unhexlify(PSS["k1_spki"])
    raises(rsapss.BadKey, rsapss.public_key_from_spki, _spki(n, 3))
    raises(rsapss.BadKey, rsapss.public_key_from_spki, _spki(n >> 1100, e))   # under 3072 bits
    raises(rsapss.BadKey, rsapss.public_key_from_spki, _spki(n << 1100, e))   # over 4096 bits
    raises(rsapss.BadKey, rsapss.public_key_from_spki, _spki(n, e)[:-5])
    bad_oid = bytearray(_spki(n, e))
    bad_oid[bad_oid.find(b"\xf7\x0d")] ^= 1
    raises(rsapss.BadKey, rsapss.public_key_from_spki, bytes(bad_oid))


def test_bit_length():
    for v in (0, 1, 255, 256, 1 << 3071, (1 << 4096) - 1):
        want = 0
        while v >> want:
            want += 1
        assert rsapss.bit_length(v) == want
