"""Property tests: the firmware BER codec against pyasn1/pysnmp as the oracle.

For every SNMP type: what we encode is byte-for-byte what pyasn1 encodes, and decodes to
the same value with pyasn1's BER decoder; what pyasn1 encodes, we decode to the value.
The same both ways for whole v1/v2c messages built by pysnmp's protocol API.
"""
import socket

from hypothesis import given, settings, strategies as st
from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import univ
from pysnmp.proto import api, rfc1902, rfc1905

from fleetbox import ber, snmp

SETTINGS = settings(max_examples=300, deadline=None)

arc = st.integers(0, 2 ** 32 - 1)
oids = st.one_of(
    st.tuples(st.integers(0, 1), st.integers(0, 39), st.lists(arc, max_size=30)),
    st.tuples(st.just(2), st.integers(0, 2 ** 32 - 81), st.lists(arc, max_size=30)),
).map(lambda t: ".".join(str(x) for x in (t[0], t[1]) + tuple(t[2])))

# (our tag, our encoder, pyasn1 type, strategy for values)
TYPES = [
    (ber.INTEGER, ber.encode_int, rfc1902.Integer32, st.integers(-2 ** 31, 2 ** 31 - 1)),
    (ber.OCTET_STRING, ber.encode_octets, rfc1902.OctetString, st.binary(max_size=300)),
    (ber.OID, ber.encode_oid, rfc1902.ObjectName, oids),
    (ber.IPADDRESS, ber.encode_ip, rfc1902.IpAddress,
     st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: "%d.%d.%d.%d" % t)),
    (ber.COUNTER32, ber.encode_counter32, rfc1902.Counter32, st.integers(0, 2 ** 32 - 1)),
    (ber.GAUGE32, ber.encode_gauge32, rfc1902.Gauge32, st.integers(0, 2 ** 32 - 1)),
    (ber.TIMETICKS, ber.encode_timeticks, rfc1902.TimeTicks, st.integers(0, 2 ** 32 - 1)),
    (ber.OPAQUE, lambda v: ber.encode_octets(v, ber.OPAQUE), rfc1902.Opaque, st.binary(max_size=40)),
    (ber.COUNTER64, ber.encode_counter64, rfc1902.Counter64, st.integers(0, 2 ** 64 - 1)),
]


def _pyasn1_pads(v):
    """pyasn1 0.6 encodes -2^(8k-1) with a redundant 0xFF octet (-128 as FF 80, not the
    minimal 80 of X.690 8.3.2); still valid BER, and we decode it, but not our octets."""
    return isinstance(v, int) and v < 0 and (-v) & (-v - 1) == 0 and (-v).bit_length() % 8 == 0


def _asn1(cls, value):
    if cls is rfc1902.IpAddress:
        return cls(socket.inet_aton(value))
    return cls(value)


def _plain(v):
    """A pyasn1/pysnmp value as the firmware represents it."""
    if isinstance(v, rfc1905.NoSuchObject):
        return ber.NO_SUCH_OBJECT
    if isinstance(v, rfc1905.NoSuchInstance):
        return ber.NO_SUCH_INSTANCE
    if isinstance(v, rfc1905.EndOfMibView):
        return ber.END_OF_MIB_VIEW
    if v.tagSet == rfc1902.IpAddress.tagSet:  # v1's rfc1155.IpAddress too
        return socket.inet_ntoa(bytes(v))
    if isinstance(v, univ.Null):  # (a subclass of OctetString in pyasn1)
        return None
    if isinstance(v, univ.OctetString):
        return bytes(v)
    if isinstance(v, univ.ObjectIdentifier):
        return str(v)
    return int(v)


typed_values = st.one_of(*[s.map(lambda v, t=t: (t, v)) for t in TYPES for s in [t[3]]])


@SETTINGS
@given(typed_values)
def test_each_type_encodes_like_pyasn1_and_round_trips(tv):
    (tag, enc, cls, _), value = tv
    ours = enc(value)
    theirs = encoder.encode(_asn1(cls, value))
    if tag == ber.INTEGER and _pyasn1_pads(value):
        assert theirs == ours[:1] + bytes((ours[1] + 1, 0xFF)) + ours[2:]
    else:
        assert ours == theirs
    assert ber.decode(theirs) == (tag, value)
    got, rest = decoder.decode(ours, asn1Spec=cls())
    assert rest == b"" and _plain(got) == value


def test_exceptions_and_null_match_pysnmp():
    for ours, theirs in ((ber.NO_SUCH_OBJECT, rfc1905.noSuchObject),
                         (ber.NO_SUCH_INSTANCE, rfc1905.noSuchInstance),
                         (ber.END_OF_MIB_VIEW, rfc1905.endOfMibView)):
        b = encoder.encode(theirs)
        assert ber.encode_exception(ours) == b
        assert ber.decode(b) == (ours.tag, ours)
    assert ber.encode_null() == encoder.encode(univ.Null(""))


@SETTINGS
@given(oids)
def test_oids_with_big_arcs(oid):
    b = encoder.encode(univ.ObjectIdentifier(oid))
    assert ber.encode_oid(oid) == b
    assert ber.decode_oid(b, 2 if b[1] < 0x80 else 2 + (b[1] & 0x7F), len(b)) == oid


@SETTINGS
@given(st.one_of(st.integers(-2 ** 63, 2 ** 63 - 1),
                 st.integers(1, 8).map(lambda k: -(1 << (8 * k - 1)))))
def test_integers_beyond_32_bits(v):
    b = encoder.encode(univ.Integer(v))
    ours = ber.encode_int(v)
    assert ber.decode(b) == (ber.INTEGER, v) and int(decoder.decode(ours)[0]) == v
    assert ours == (b[:1] + bytes((b[1] - 1,)) + b[3:] if _pyasn1_pads(v) else b)


varbind_lists = st.lists(st.tuples(oids, typed_values | st.sampled_from(
    ["null", "noSuchObject", "noSuchInstance", "endOfMibView"])), max_size=20)

_EXC = {"noSuchObject": (ber.NO_SUCH_OBJECT, rfc1905.noSuchObject),
        "noSuchInstance": (ber.NO_SUCH_INSTANCE, rfc1905.noSuchInstance),
        "endOfMibView": (ber.END_OF_MIB_VIEW, rfc1905.endOfMibView)}


def _value_pair(tv):
    """(our encoded TLV, our decoded value, pysnmp value) for a drawn value."""
    if tv == "null":
        return ber.encode_null(), None, univ.Null("")
    if isinstance(tv, str):
        ours, theirs = _EXC[tv]
        return ber.encode_exception(ours), ours, theirs
    (tag, enc, cls, _), value = tv
    return enc(value), value, _asn1(cls, value)


@settings(max_examples=150, deadline=None)
@given(varbind_lists, st.integers(0, 2 ** 31 - 1), st.binary(max_size=40), st.sampled_from(["1", "2c"]),
       st.integers(0, 18), st.integers(0, 20))
def test_messages_both_ways_with_pysnmp(vbs, rid, community, version, es, ei):
    mod = api.PROTOCOL_MODULES[api.SNMP_VERSION_1 if version == "1" else api.SNMP_VERSION_2C]
    pairs = [(o, _value_pair(tv)) for o, tv in vbs]
    if version == "1":  # v1 has no Counter64 and no exceptions
        pairs = [(o, p) for o, p in pairs
                 if not isinstance(p[2], (rfc1902.Counter64, rfc1905.NoSuchObject,
                                          rfc1905.NoSuchInstance, rfc1905.EndOfMibView))]
    expect = [(o, p[1]) for o, p in pairs]
    # ours -> pysnmp
    msg = snmp.encode_message(version, community, ber.RESPONSE, rid, [(o, p[0]) for o, p in pairs], es, ei)
    m, rest = decoder.decode(msg, asn1Spec=mod.Message())
    assert rest == b""
    pdu = mod.apiMessage.get_pdu(m)
    assert bytes(mod.apiMessage.get_community(m)) == community
    assert int(mod.apiPDU.get_request_id(pdu)) == rid
    assert int(pdu[1]) == es and int(pdu[2]) == ei  # (pysnmp's getter checks the index)
    assert [(str(o), _plain(v)) for o, v in mod.apiPDU.get_varbinds(pdu)] == expect
    # pysnmp -> ours
    pdu = mod.GetResponsePDU()
    mod.apiPDU.set_defaults(pdu)
    mod.apiPDU.set_request_id(pdu, rid)
    mod.apiPDU.set_error_status(pdu, es)
    mod.apiPDU.set_error_index(pdu, ei)
    mod.apiPDU.set_varbinds(pdu, [(o, p[2]) for o, p in pairs])
    m = mod.Message()
    mod.apiMessage.set_defaults(m)
    mod.apiMessage.set_community(m, community)
    mod.apiMessage.set_pdu(m, pdu)
    data = encoder.encode(m)
    if not any(isinstance(p[2], rfc1902.Integer32) and _pyasn1_pads(p[1]) for o, p in pairs):
        assert data == msg  # the same octets
    r = snmp.decode_response(data)
    assert (r.version, r.community, r.pdu_type, r.request_id, r.error_status, r.error_index) == (
        version, community, ber.RESPONSE, rid, es, ei)
    assert r.varbinds == expect
