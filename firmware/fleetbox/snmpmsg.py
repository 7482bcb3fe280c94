"""SNMP v1/v2c/v3 messages: credentials, BER encoding and decoding of v1/v2c messages
and PDUs (SNMPv3's security wrapping is fleetbox.usm). No I/O here: fleetbox.snmp's
Client sends and receives them, and tests and host tools build agents' replies with them.
"""
from fleetbox import port as _port
from fleetbox.errors import FleetboxError
from fleetbox.ber import (
    BERError, read_tlv, decode_int, decode_oid, decode_value, encode_int, tlv,
    encode_oid, encode_null, header_len, put_header,
    INTEGER, OCTET_STRING, OID, SEQUENCE, GET, GETNEXT, RESPONSE, SET, GETBULK, INFORM,
    TRAP, REPORT,
)

MAX_MSG = 65535
_PDUS = (GET, GETNEXT, RESPONSE, SET, GETBULK, INFORM, TRAP, REPORT)

ERROR_NAMES = (
    "noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr", "noAccess",
    "wrongType", "wrongLength", "wrongEncoding", "wrongValue", "noCreation",
    "inconsistentValue", "resourceUnavailable", "commitFailed", "undoFailed",
    "authorizationError", "notWritable", "inconsistentName",
)
TOO_BIG = 1
NO_SUCH_NAME = 2


def error_name(status):
    if 0 <= status < len(ERROR_NAMES):
        return ERROR_NAMES[status]
    return "error%d" % status


class SnmpError(FleetboxError):
    """Protocol-level failure. `status`/`index` are the PDU's error-status/index
    (0 when the failure is not an agent-reported error)."""

    def __init__(self, msg, status=0, index=0):
        super().__init__(msg)
        self.status = status
        self.index = index
        self.name = error_name(status) if status else msg


class Timeout(SnmpError):
    def __init__(self, msg):
        super().__init__(msg)
        self.name = "timeout"


def _wire_version(version):
    if version == "1" or version == 0:
        return 0
    if version == "2c" or version == 1:
        return 1
    if version == "3" or version == 3:
        return 3
    raise ValueError("unsupported SNMP version %r" % (version,))


def _bytes(community):
    return community.encode() if isinstance(community, str) else bytes(community)


class Credential:
    """How to talk to an agent: a v1/v2c community or a v3 USM user (+ context name).
    Build with Credential.v1(), .v2c() or .v3(); pass as `cred=` to the Client."""

    def __init__(self, version, community=b"", user=None, context=b""):
        self.version = "1" if _wire_version(version) == 0 else ("3" if version in ("3", 3) else "2c")
        if self.version == "3" and user is None:
            raise ValueError("an SNMPv3 credential needs a user: use Credential.v3()")
        self.community = _bytes(community)
        _port.secret(self.community)
        self.user = user
        self.context = _bytes(context)

    @staticmethod
    def v1(community=b"public"):
        return Credential("1", community)

    @staticmethod
    def v2c(community=b"public"):
        return Credential("2c", community)

    @staticmethod
    def v3(user, auth_proto=None, auth_pass=None, priv_proto=None, priv_pass=None,
           context=b"", auth_ku=None, priv_ku=None):
        """auth_proto: MD5, SHA, SHA224, SHA256, SHA384, SHA512 or None (noAuthNoPriv);
        priv_proto: AES, AES192, AES256 (net-snmp's key extension), AES192C, AES256C
        (Cisco's) or None (authNoPriv). auth_ku/priv_ku: master keys instead of the
        passphrases (see usm.User). Raises usm.UsmError on a bad value (DES too)."""
        usm = _usm()
        return Credential("3", b"", usm.User(user, auth_proto, auth_pass, priv_proto,
                                             priv_pass, auth_ku, priv_ku), context)

    def __repr__(self):
        if self.version == "3":
            return "Credential(v3 %r %s)" % (self.user.name, self.user.level)
        return "Credential(v%s)" % self.version


# ------------------------------------------------------------------- messages

class Response:
    """A decoded v1/v2c message (any PDU type except the v1 Trap-PDU)."""

    def __init__(self, version, community, pdu_type, request_id, error_status,
                 error_index, varbinds):
        self.version = version          # "1" or "2c"
        self.community = community      # bytes
        self.pdu_type = pdu_type        # int tag, e.g. ber.RESPONSE (0xA2)
        self.request_id = request_id
        self.error_status = error_status  # non_repeaters for a GetBulk PDU
        self.error_index = error_index    # max_repetitions for a GetBulk PDU
        self.varbinds = varbinds        # [(oid_str, value), ...]
        self.size = 0                   # octets of the datagram it came in (client replies)

    def __repr__(self):
        return "Response(v%s, %r, 0x%02x, id=%d, err=%d/%d, %r)" % (
            self.version, self.community, self.pdu_type, self.request_id,
            self.error_status, self.error_index, self.varbinds)


def encode_message(version, community, pdu_type, request_id, varbinds,
                   error_status=0, error_index=0):
    """Encode a message. `varbinds` is [(oid, encoded_value_tlv_bytes), ...].
    Sizes are computed first and everything is written into one buffer."""
    wv = _wire_version(version)
    if wv == 3:
        raise ValueError("SNMPv3 messages are built by the Client (see usm.encode_message)")
    ver = encode_int(wv)
    if pdu_type == GETBULK and wv == 0:
        raise ValueError("GetBulk needs v2c")
    community = _bytes(community)
    vbs = []
    vbl = 0
    for o, v in varbinds:
        eo = encode_oid(o)
        n = len(eo) + len(v)
        vbs.append((eo, v, n))
        vbl += header_len(n) + n
    ints = encode_int(request_id) + encode_int(error_status) + encode_int(error_index)
    pdu = len(ints) + header_len(vbl) + vbl
    msg = len(ver) + header_len(len(community)) + len(community) + header_len(pdu) + pdu
    out = bytearray(header_len(msg) + msg)
    p = put_header(out, 0, SEQUENCE, msg)
    out[p:p + len(ver)] = ver
    p = put_header(out, p + len(ver), OCTET_STRING, len(community))
    out[p:p + len(community)] = community
    p = put_header(out, p + len(community), pdu_type, pdu)
    out[p:p + len(ints)] = ints
    p = put_header(out, p + len(ints), SEQUENCE, vbl)
    for eo, v, n in vbs:
        p = put_header(out, p, SEQUENCE, n)
        out[p:p + len(eo)] = eo
        p += len(eo)
        out[p:p + len(v)] = v
        p += len(v)
    return bytes(out)


def encode_request(version, community, pdu_type, request_id, oids,
                   non_repeaters=0, max_repetitions=10):
    null = encode_null()
    vbs = [(o, null) for o in oids]
    if pdu_type == GETBULK:
        return encode_message(version, community, pdu_type, request_id, vbs,
                              non_repeaters, max_repetitions)
    return encode_message(version, community, pdu_type, request_id, vbs)


def encode_pdu(pdu_type, request_id, oids, non_repeaters=0, max_repetitions=10):
    """A request PDU alone (the data of an SNMPv3 ScopedPDU)."""
    null = encode_null()
    vbl = b"".join(tlv(SEQUENCE, encode_oid(o) + null) for o in oids)
    a, b = (non_repeaters, max_repetitions) if pdu_type == GETBULK else (0, 0)
    return tlv(pdu_type, encode_int(request_id) + encode_int(a) + encode_int(b) + tlv(SEQUENCE, vbl))


def _expect(b, pos, end, tag):
    t, s, e = read_tlv(b, pos, end)
    if t != tag:
        raise BERError("expected tag 0x%02x, got 0x%02x" % (tag, t))
    return s, e


def decode_response(data):
    """Decode a v1/v2c message; raises BERError (only) on anything malformed."""
    n = len(data)
    if n > MAX_MSG:
        raise BERError("message too large")
    b = memoryview(data)
    s, e = _expect(b, 0, n, SEQUENCE)
    if e != n:
        raise BERError("trailing data")
    s1, e1 = _expect(b, s, e, INTEGER)
    ver = decode_int(b, s1, e1)
    if ver != 0 and ver != 1:
        raise BERError("unsupported version %d" % ver)
    s2, e2 = _expect(b, e1, e, OCTET_STRING)
    community = bytes(b[s2:e2])
    pdu_type, rid, es, ei, varbinds = decode_pdu(b, e2, e)
    return Response("1" if ver == 0 else "2c", community, pdu_type, rid, es, ei, varbinds)


def decode_pdu(b, pos, e):
    """The PDU filling b[pos:e] -> (pdu_type, request_id, error_status, error_index, varbinds)."""
    pdu_type, ps, pe = read_tlv(b, pos, e)
    if pdu_type not in _PDUS:
        raise BERError("unsupported PDU 0x%02x" % pdu_type)
    if pe != e:
        raise BERError("trailing data")
    s, p = _expect(b, ps, pe, INTEGER)
    rid = decode_int(b, s, p)
    s, p2 = _expect(b, p, pe, INTEGER)
    es = decode_int(b, s, p2)
    s, p = _expect(b, p2, pe, INTEGER)
    ei = decode_int(b, s, p)
    vs, ve = _expect(b, p, pe, SEQUENCE)
    if ve != pe:
        raise BERError("trailing data")
    varbinds = []
    p = vs
    while p < ve:
        s, p = _expect(b, p, ve, SEQUENCE)
        os_, oe = _expect(b, s, p, OID)
        oid = decode_oid(b, os_, oe)
        t, xs, xe = read_tlv(b, oe, p)
        if xe != p:
            raise BERError("trailing data in varbind")
        varbinds.append((oid, decode_value(t, b, xs, xe)))
    return pdu_type, rid, es, ei, varbinds


def cut_head(data):
    """(version, community, request id) from the start of a v1/v2c message that the receive
    buffer cut short (its outer lengths run past the end), or None when not even that is there."""
    b = memoryview(data)
    n = len(b)
    try:
        pos = _skip_header(b, 0, n, SEQUENCE)
        s, e = _expect(b, pos, n, INTEGER)
        ver = decode_int(b, s, e)
        s2, e2 = _expect(b, e, n, OCTET_STRING)
        pos = _skip_header(b, e2, n, b[e2] if e2 < n else 0)
        s, e = _expect(b, pos, n, INTEGER)
        if ver != 0 and ver != 1:
            return None
        return "1" if ver == 0 else "2c", bytes(b[s2:e2]), decode_int(b, s, e)
    except BERError:
        return None


def _skip_header(b, pos, n, tag):
    # a constructed TLV's tag and length only: its content is what was cut
    if n - pos < 2 or b[pos] != tag:
        raise BERError("truncated")
    k = b[pos + 1] & 0x7F if b[pos + 1] & 0x80 else 0
    return pos + 2 + k


def message_version(data):
    """The wire version of a message (0, 1, 3, ...); BERError when it has none."""
    b = memoryview(data)
    s, e = _expect(b, 0, len(b), SEQUENCE)
    s1, e1 = _expect(b, s, e, INTEGER)
    return decode_int(b, s1, e1)


def _usm():
    """fleetbox.usm, imported on first SNMPv3 use: a v1/v2c-only site keeps its ~17 KB."""
    from fleetbox import usm
    return usm


def discovery_request(msg_id, max_size):
    """The SNMPv3 engine discovery request (RFC 3414 4): a noAuthNoPriv GET with an empty
    user and no varbinds, which any v3 agent answers with an unknownEngineIDs report
    carrying its engine ID, boots and time. No secret travels."""
    usm = _usm()
    scoped = usm.encode_scoped(b"", b"", encode_pdu(GET, msg_id, []))
    return usm.encode_message(msg_id, max_size, usm.User(b""), b"", 0, 0, scoped)
