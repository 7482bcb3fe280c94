"""BER codec: round trips, known vectors, hostile input (runs on CPython and MicroPython)."""
from fleetbox import ber
from fleetbox.ber import BERError
from check import raises


def h(s):
    return bytes.fromhex(s.replace(" ", ""))


def test_integer_vectors():
    cases = ((0, "020100"), (1, "020101"), (127, "02017f"), (128, "02020080"),
             (255, "020200ff"), (256, "02020100"), (-1, "0201ff"), (-128, "020180"),
             (-129, "0202ff7f"), (2147483647, "02047fffffff"), (-2147483648, "020480000000"))
    for v, enc in cases:
        assert ber.encode_int(v) == h(enc), v
        assert ber.decode(h(enc)) == (ber.INTEGER, v)


def test_unsigned_types_round_trip():
    for tag in (ber.COUNTER32, ber.GAUGE32, ber.TIMETICKS):
        for v in (0, 1, 127, 128, 65535, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1):
            enc = ber.encode(tag, v)
            assert enc[0] == tag
            assert ber.decode(enc) == (tag, v)
        raises(BERError, ber.encode, tag, 2 ** 32)
        raises(BERError, ber.encode, tag, -1)
    assert ber.encode_counter32(2 ** 32 - 1) == h("410500ffffffff")
    for v in (0, 2 ** 32, 2 ** 63, 2 ** 64 - 1):
        assert ber.decode(ber.encode_counter64(v)) == (ber.COUNTER64, v)
    assert ber.encode_counter64(2 ** 64 - 1) == h("460900ffffffffffffffff")
    raises(BERError, ber.encode_counter64, 2 ** 64)


def test_unsigned_without_leading_zero_is_read_modulo():
    # Some agents encode 0x80000000..0xffffffff in 4 octets (as a negative number).
    assert ber.decode(h("4104ffffffff")) == (ber.COUNTER32, 2 ** 32 - 1)
    assert ber.decode(h("430480000000")) == (ber.TIMETICKS, 2 ** 31)
    assert ber.decode(h("4608ffffffffffffffff")) == (ber.COUNTER64, 2 ** 64 - 1)
    raises(BERError, ber.decode, h("42050100000000"))  # 2**32 does not fit Gauge32


def test_octets_null_ip_opaque_exceptions_round_trip():
    for v in (b"", b"a", b"\x00\xff" * 100, bytes(range(256)) * 3):
        assert ber.decode(ber.encode_octets(v)) == (ber.OCTET_STRING, v)
        assert ber.decode(ber.encode(ber.OPAQUE, v)) == (ber.OPAQUE, v)
    assert ber.encode_octets("public") == h("04067075626c6963")
    assert ber.encode_null() == h("0500")
    assert ber.decode(h("0500")) == (ber.NULL, None)
    assert ber.encode_ip("192.168.1.20") == h("4004c0a80114")
    assert ber.decode(h("4004c0a80114")) == (ber.IPADDRESS, "192.168.1.20")
    for exc, tag in ((ber.NO_SUCH_OBJECT, 0x80), (ber.NO_SUCH_INSTANCE, 0x81),
                     (ber.END_OF_MIB_VIEW, 0x82)):
        enc = ber.encode_exception(exc)
        assert enc == bytes((tag, 0))
        t, v = ber.decode(enc)
        assert t == tag and v is exc and ber.is_exception(v)
    assert repr(ber.NO_SUCH_OBJECT) == "noSuchObject"
    assert repr(ber.END_OF_MIB_VIEW) == "endOfMibView"
    assert not ber.is_exception(None) and not ber.is_exception(0)


def test_unknown_tag_is_kept_raw():
    assert ber.decode(h("4703010203")) == (0x47, (0x47, b"\x01\x02\x03"))
    assert ber.decode(ber.encode(0x47, (0x47, b"xy"))) == (0x47, (0x47, b"xy"))


def test_oid_vectors_and_round_trip():
    assert ber.encode_oid("1.3.6.1.2.1.1.1.0") == h("06082b06010201010100")
    assert ber.encode_oid(".1.3.6.1.2.1.1.1.0") == h("06082b06010201010100")
    assert ber.encode_oid((1, 3, 6, 1, 2, 1, 1, 1, 0)) == h("06082b06010201010100")
    assert ber.encode_oid("1.3.6.1.4.1.2435.2.3.9.1") == h("060b2b06010401930302030901")
    for oid in ("0.0", "1.3", "2.999.3", "1.3.6.1.4.1.4294967295", "1.3.6.1.4.1.128.16383.16384",
                "2.100", "0.39", "1.3." + ".".join(str(i) for i in range(126))):
        assert ber.decode(ber.encode_oid(oid)) == (ber.OID, oid), oid
    assert ber.decode(h("0603883703")) == (ber.OID, "2.999.3")
    for bad in ("", "1", "3.1", "1.40", "1.3.x", "1..3", "1.3.-1", "1.3.4294967296",
                "1.3." + ".".join("1" for i in range(127))):
        raises(BERError, ber.encode_oid, bad)


def test_oid_helpers():
    assert ber.oid_to_tuple("1.3.6.1") == (1, 3, 6, 1)
    assert ber.oid_to_tuple(".1.3.6.1") == (1, 3, 6, 1)
    assert ber.tuple_to_oid((1, 3, 6, 1)) == "1.3.6.1"
    assert ber.oid_startswith("1.3.6.1.2.1", "1.3.6.1.2")
    assert ber.oid_startswith("1.3.6.1.2", "1.3.6.1.2")
    assert not ber.oid_startswith("1.3.6.1.21", "1.3.6.1.2")
    assert not ber.oid_startswith("1.3.6.1", "1.3.6.1.2")
    assert ber.oid_compare("1.3.6.1.2", "1.3.6.1.10") == -1
    assert ber.oid_compare("1.3.6.1.10", "1.3.6.1.2.5") == 1
    assert ber.oid_compare("1.3.6", "1.3.6") == 0
    assert ber.oid_compare("1.3.6", "1.3.6.0") == -1
    raises(BERError, ber.oid_to_tuple, "1.a")


def test_lengths():
    assert ber.encode_length(0) == b"\x00"
    assert ber.encode_length(127) == b"\x7f"
    assert ber.encode_length(128) == h("8180")
    assert ber.encode_length(256) == h("820100")
    assert ber.encode_length(70000) == h("83011170")
    v = b"x" * 300
    enc = ber.encode_octets(v)
    assert enc[:4] == h("0482012c")
    assert ber.decode(enc) == (ber.OCTET_STRING, v)
    # long form where short would do is accepted (BER, not DER)
    assert ber.decode(h("04810161")) == (ber.OCTET_STRING, b"a")
    assert ber.decode(h("04840000000161")) == (ber.OCTET_STRING, b"a")


def test_constructed_round_trip():
    tree = (ber.SEQUENCE, [(ber.INTEGER, 1), (ber.OCTET_STRING, b"public"),
                           (ber.GET, [(ber.INTEGER, 0x652F68ED), (ber.INTEGER, 0), (ber.INTEGER, 0),
                                      (ber.SEQUENCE, [(ber.SEQUENCE, [(ber.OID, "1.3.6.1.2.1.1.1.0"),
                                                                      (ber.NULL, None)])])])])
    enc = ber.encode(*tree)
    # The exact bytes net-snmp's `snmpget -d -v2c -c public HOST sysDescr.0` sent.
    assert enc == h("3029 020101 04067075626c6963 a01c 0204652f68ed 020100 020100"
                    " 300e 300c 06082b06010201010100 0500")
    assert ber.decode(enc) == tree


def test_every_type_in_one_sequence():
    items = [(ber.INTEGER, -5), (ber.OCTET_STRING, b"\x00abc"), (ber.NULL, None),
             (ber.OID, "1.3.6.1.4.1.9"), (ber.IPADDRESS, "10.0.0.1"), (ber.COUNTER32, 7),
             (ber.GAUGE32, 2 ** 32 - 1), (ber.TIMETICKS, 12345), (ber.OPAQUE, b"\x9f\x78\x04"),
             (ber.COUNTER64, 2 ** 40), (0x80, ber.NO_SUCH_OBJECT), (0x81, ber.NO_SUCH_INSTANCE),
             (0x82, ber.END_OF_MIB_VIEW)]
    tree = (ber.SEQUENCE, items)
    assert ber.decode(ber.encode(*tree)) == tree
    assert ber.decode(bytearray(ber.encode(*tree))) == tree
    assert ber.decode(memoryview(ber.encode(*tree))) == tree


def _hostile():
    deep = b""
    for _i in range(40):
        deep = ber.tlv(0x30, deep)
    return [
        b"", b"\x30", b"\x02", b"\x02\x01", b"\x04\x05abc", b"\x30\x80\x00\x00",   # indefinite
        h("0485ffffffffff") + b"x", h("0484ffffffff") + b"x", h("0484 7fffffff 61"),
        h("3003020101ff"),                 # trailing byte
        b"\x1f\x01\x00",                   # multi-byte tag
        h("0200"), h("020a01020304050607080910"),  # empty / oversized integer
        h("0501 00"), h("4003010203"), h("40050102030405"), h("800100"),
        h("0600"), h("060281"), h("06028001"),  # empty, truncated, non-minimal arc
        h("0607 2b 8f ff ff ff 7f"),           # arc above 2**32-1
        h("0608 2b ff ff ff ff ff ff 7f"),     # arc with too many octets
        ber.tlv(6, b"\x2b" + b"\x01" * 200),   # too many arcs
        deep,
        h("30 06 02 01 01 04 05 61"),          # inner length past outer
        h("3003 0205 01"),
    ]


def test_hostile_input_raises_bererror_only():
    for data in _hostile():
        e = raises(BERError, ber.decode, data)
        assert isinstance(e, ValueError)


def test_mutations_raise_bererror_only():
    # Every truncation and many single-byte corruptions of a valid message.
    enc = ber.encode(ber.SEQUENCE, [(ber.INTEGER, 1), (ber.OCTET_STRING, b"public"),
                                    (ber.RESPONSE, [(ber.INTEGER, 99), (ber.INTEGER, 0), (ber.INTEGER, 0),
                                                    (ber.SEQUENCE, [(ber.SEQUENCE, [(ber.OID, "1.3.6.1.2.1.1.3.0"),
                                                                                    (ber.TIMETICKS, 100)])])])])
    for n in range(len(enc)):
        raises(BERError, ber.decode, enc[:n])
    for i in range(len(enc)):
        for v in (0x00, 0x7f, 0x80, 0x84, 0xff):
            m = bytearray(enc)
            m[i] = v
            try:
                ber.decode(bytes(m))
            except BERError:
                pass
