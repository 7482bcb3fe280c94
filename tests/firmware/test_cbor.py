"""fleetbox.cbor: byte-exact against RFC 8949 Appendix A; round-trips with cbor2 (CPython).

Runs under pytest on CPython and under tests/mprun.py on MicroPython.
"""
import sys
import struct
from binascii import hexlify, unhexlify

from check import raises
from fleetbox import cbor

MICROPYTHON = sys.implementation.name == "micropython"


def _hex(b):
    return hexlify(b).decode()


def _f64(bits):
    return struct.unpack(">d", unhexlify(bits))[0]


# (value, expected encoding) from RFC 8949 Appendix A (preferred serialization)
APPENDIX_A = [
    (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"),
    (100, "1864"), (1000, "1903e8"), (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (18446744073709551616, "c249010000000000000000"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (-18446744073709551617, "c349010000000000000000"),
    (-1, "20"), (-10, "29"), (-100, "3863"), (-1000, "3903e7"),
    (False, "f4"), (True, "f5"), (None, "f6"),
    (b"", "40"), (unhexlify("01020304"), "4401020304"),
    ("", "60"), ("a", "6161"), ("IETF", "6449455446"), ("\"\\", "62225c"),
    ("\u00fc", "62c3bc"), ("\u6c34", "63e6b0b4"), ("\U00010151", "64f0908591"),
    ([], "80"), ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"), ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    ({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
     "a56161614161626142616361436164614461656145"),
]

# (IEEE 754 double bits of the value, expected encoding); built from bits so that
# float literal parsing of the runtime does not matter
APPENDIX_A_FLOATS = [
    ("0000000000000000", "f90000"),            # 0.0
    ("8000000000000000", "f98000"),            # -0.0
    ("3ff0000000000000", "f93c00"),            # 1.0
    ("3ff199999999999a", "fb3ff199999999999a"),  # 1.1
    ("3ff8000000000000", "f93e00"),            # 1.5
    ("40effc0000000000", "f97bff"),            # 65504.0
    ("40f86a0000000000", "fa47c35000"),        # 100000.0
    ("47efffffe0000000", "fa7f7fffff"),        # 3.4028234663852886e+38
    ("7e37e43c8800759c", "fb7e37e43c8800759c"),  # 1.0e+300
    ("3e70000000000000", "f90001"),            # 5.960464477539063e-8
    ("3f10000000000000", "f90400"),            # 0.00006103515625
    ("c010000000000000", "f9c400"),            # -4.0
    ("c010666666666666", "fbc010666666666666"),  # -4.1
    ("7ff0000000000000", "f97c00"),            # Infinity
    ("7ff8000000000000", "f97e00"),            # NaN
    ("fff0000000000000", "f9fc00"),            # -Infinity
]


def test_appendix_a():
    for value, expected in APPENDIX_A:
        got = _hex(cbor.dumps(value))
        assert got == expected, (value, got, expected)


def test_appendix_a_floats():
    for bits, expected in APPENDIX_A_FLOATS:
        got = _hex(cbor.dumps(_f64(bits)))
        assert got == expected, (bits, got, expected)


def test_float_width_edges():
    cases = [
        ("3f50000000000000", "f91400"),              # 2**-10: normal half
        ("3ef0000000000000", "f90100"),              # 2**-16: half subnormal
        ("3f0ff80000000000", "f903ff"),              # largest half subnormal
        ("3f0ff00000000000", "f903fe"),
        ("3e7ff00000000000", "fa33ff8000"),          # too many bits for a half subnormal
        ("3e60000000000000", "fa33000000"),          # 2**-25: below half range
        ("3ff0040000000000", "f93c01"),              # 1 + 2**-10: last half mantissa bit
        ("3ff0020000000000", "fa3f801000"),          # 1 + 2**-11: needs float32
        ("40f0000000000000", "fa47800000"),          # 65536.0: above half range
        ("36a0000000000000", "fa00000001"),          # 2**-149: float32 subnormal
        ("36b0000000000000", "fa00000002"),          # 2**-148
        ("0000000000000001", "fb0000000000000001"),  # 5e-324
        ("3ff0000000000001", "fb3ff0000000000001"),
        ("7fefffffffffffff", "fb7fefffffffffffff"),  # largest double
        ("c0effc0000000000", "f9fbff"),              # -65504.0
    ]
    for bits, expected in cases:
        got = _hex(cbor.dumps(_f64(bits)))
        assert got == expected, (bits, got, expected)


def test_ints_boundaries():
    cases = [
        (23, "17"), (24, "1818"), (255, "18ff"), (256, "190100"), (65535, "19ffff"),
        (65536, "1a00010000"), (4294967295, "1affffffff"), (4294967296, "1b0000000100000000"),
        (-24, "37"), (-25, "3818"), (-256, "38ff"), (-257, "390100"),
        (-4294967296, "3affffffff"), (-4294967297, "3b0000000100000000"),
        (2 ** 64 + 255, "c249" + "0100000000000000ff"),
        (-(2 ** 72) - 1, "c34a" + "01" + "00" * 9),
        (2 ** 128, "c251" + "01" + "00" * 16),
    ]
    for value, expected in cases:
        got = _hex(cbor.dumps(value))
        assert got == expected, (value, got, expected)


def test_byte_like_and_sequences():
    assert cbor.dumps(bytearray(b"\x01\x02")) == unhexlify("420102")
    assert cbor.dumps(memoryview(b"\x00\x01\x02\x03")[1:3]) == unhexlify("420102")
    assert cbor.dumps((1, (2,))) == unhexlify("82018102")
    long = b"x" * 300
    assert cbor.dumps(long)[:3] == unhexlify("59012c")
    assert cbor.dumps("\u00e9" * 12)[:2] == unhexlify("7818")


def test_map_keys_sorted_deterministic():
    # bytewise order of the encoded keys: ints (major 0/1) before text, short text first
    d = {}
    for k in ("zz", "a", "b", 10, -1, 1000, "aa"):
        d[k] = 0
    expected = "a7" + "0a00" + "1903e800" + "2000" + "616100" + "616200" + "62616100" + "627a7a00"
    assert _hex(cbor.dumps(d)) == expected
    d2 = {}
    for k in ("aa", "zz", 1000, -1, "b", 10, "a"):
        d2[k] = 0
    assert cbor.dumps(d2) == cbor.dumps(d)


def test_dump_streams_same_bytes():
    obj = [{"serial": "CN1", "pages": 123456, "toner": [0.5, None, True]}, b"\x00" * 40, -7, 2 ** 70]
    parts = []
    cbor.dump(obj, parts.append)
    assert len(parts) > 5
    assert b"".join(parts) == cbor.dumps(obj)


def test_unsupported_types():
    raises(TypeError, cbor.dumps, object())
    raises(TypeError, cbor.dumps, {1, 2})
    raises(TypeError, cbor.dumps, [1, object()])
    raises(TypeError, cbor.dumps, {(1, 2): 3})
    raises(TypeError, cbor.dumps, {1.5: 3})
    raises(TypeError, cbor.dumps, {None: 3})
    raises(TypeError, cbor.dumps, {True: 3})
    e = raises(TypeError, cbor.dumps, {b"k": 3})
    assert "key" in str(e)


def test_depth_limit():
    x = []  # MAX_DEPTH nested arrays are fine, one more is not
    for _ in range(cbor.MAX_DEPTH - 1):
        x = [x]
    assert cbor.dumps(x) == b"\x81" * (cbor.MAX_DEPTH - 1) + b"\x80"
    raises(ValueError, cbor.dumps, [x])
    y = []
    y.append(y)
    raises(ValueError, cbor.dumps, y)
    d = {}
    d["d"] = d
    raises(ValueError, cbor.dumps, d)


def test_roundtrip_cbor2_hypothesis():
    if MICROPYTHON:
        return  # cbor2 and hypothesis are CPython-only; the vectors above run on both
    import math
    import cbor2
    from hypothesis import given, settings, strategies as st

    scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
               | st.text() | st.binary())
    keys = st.text(max_size=8) | st.integers(min_value=-2 ** 70, max_value=2 ** 70)
    values = st.recursive(scalars, lambda ch: st.lists(ch, max_size=5)
                          | st.dictionaries(keys, ch, max_size=5), max_leaves=30)

    @settings(max_examples=400, deadline=None)
    @given(values)
    def check(v):
        enc = cbor.dumps(v)
        assert cbor2.loads(enc) == v
        # deterministic: re-encoding what cbor2 decoded gives the same bytes
        assert cbor.dumps(cbor2.loads(enc)) == enc

    @settings(max_examples=300, deadline=None)
    @given(st.floats(allow_nan=False))
    def check_float_shortest(x):
        enc = cbor.dumps(x)
        # cbor2 also picks the shortest exact width
        assert enc == cbor2.dumps(x, canonical=True)
        y = cbor2.loads(enc)
        assert y == x and math.copysign(1, y) == math.copysign(1, x)

    check()
    check_float_shortest()
    assert math.isnan(cbor2.loads(cbor.dumps(float("nan"))))


# -- decoder (the cloud's answers: docs/downlink.md)

def test_loads_reads_what_dumps_writes():
    for value, enc in APPENDIX_A:
        if enc[:2] in ("c2", "c3"):
            continue        # bignums are tags: the decoder takes none
        got = cbor.loads(unhexlify(enc))
        assert got == value and type(got) is type(value), (enc, got)
    doc = {"ok": True, "last_seq": 2 ** 63 - 1, "time": 1767225600, "resync": [1, 2], "x": None,
           "b": b"\x00\xff", "f": 1.5, "h": -0.0, "n": -7, "nest": {"a": [[], {}]}}
    assert cbor.loads(cbor.dumps(doc)) == doc


def test_loads_floats_of_every_width():
    for enc, value in (("f93c00", 1.0), ("f97bff", 65504.0), ("f90001", 5.960464477539063e-08),
                       ("f9c400", -4.0), ("fa47c35000", 100000.0), ("fb3ff199999999999a", 1.1),
                       ("f97c00", float("inf")), ("f9fc00", float("-inf"))):
        assert cbor.loads(unhexlify(enc)) == value, enc
    nan = cbor.loads(unhexlify("f97e00"))
    assert nan != nan


def test_loads_refuses_hostile_input():
    cases = [
        "", "18", "1901", "62c3", "9f", "bf", "5f", "7f",   # truncated / indefinite
        "1c", "f8ff", "f7", "c249010000000000000000",   # reserved info, simple values, tags
        "9bffffffffffffffff", "bbffffffffffffffff",      # counts no input could hold
        "7bffffffffffffffff00", "5bffffffffffffffff00",  # lengths no input could hold
        "a2616101616102", "a1f501", "a1810000",           # duplicate key, bad key types
        "0000", "62c328",                                 # trailing bytes; bad UTF-8
    ]
    for enc in cases:
        try:
            cbor.loads(unhexlify(enc))
        except cbor.DecodeError:
            continue
        raise AssertionError("accepted %s" % enc)


def test_loads_bounds_depth_and_items():
    deep = unhexlify("81" * 9 + "00")
    raises(cbor.DecodeError, cbor.loads, deep)
    assert cbor.loads(unhexlify("81" * 8 + "00"))
    assert cbor.loads(deep, max_depth=9) == [[[[[[[[[0]]]]]]]]]
    many = cbor.dumps(list(range(600)))
    raises(cbor.DecodeError, cbor.loads, many)
    assert len(cbor.loads(many, max_items=601)) == 600
    assert issubclass(cbor.DecodeError, ValueError)
