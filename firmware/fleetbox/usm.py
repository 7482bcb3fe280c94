"""SNMPv3 User-based Security Model (RFC 3414) for the manager side: the SNMPv3
message wrapper (RFC 3412), its authentication and privacy, and an agent's engine
clock. Keys, HMAC, AES-CFB and User are fleetbox.usmcrypto (re-exported here). The
request/discovery logic lives in fleetbox.snmpv3, for fleetbox.snmp's Client.
"""
from fleetbox import port as _port
from fleetbox.ber import (
    BERError, read_tlv, decode_int, encode_int, tlv, header_len,
    INTEGER, OCTET_STRING, SEQUENCE,
)
from fleetbox.usmcrypto import (  # noqa: F401 (re-exported for callers)
    AUTH_PROTOCOLS, PRIV_PROTOCOLS, FLAG_AUTH, FLAG_PRIV, UsmError, hmac, password_to_key,
    localize_key, extend_priv_key, User, aes_cfb,
)

FLAG_REPORTABLE = 4
SECURITY_MODEL_USM = 3
TIME_WINDOW = 150
MAX_BOOTS = 2147483647

# usmStats counters an agent reports (RFC 3414 5): OID -> name
USM_STATS = "1.3.6.1.6.3.15.1.1."
REPORT_NAMES = {
    "1.3.6.1.6.3.15.1.1.1.0": "unsupportedSecLevels",
    "1.3.6.1.6.3.15.1.1.2.0": "notInTimeWindows",
    "1.3.6.1.6.3.15.1.1.3.0": "unknownUserNames",
    "1.3.6.1.6.3.15.1.1.4.0": "unknownEngineIDs",
    "1.3.6.1.6.3.15.1.1.5.0": "wrongDigests",
    "1.3.6.1.6.3.15.1.1.6.0": "decryptionErrors",
    "1.3.6.1.6.3.11.2.1.1.0": "unknownSecurityModels",
    "1.3.6.1.6.3.11.2.1.2.0": "invalidMsgs",
    "1.3.6.1.6.3.11.2.1.3.0": "unknownPDUHandlers",
    "1.3.6.1.6.3.12.1.4.0": "unavailableContexts",
    "1.3.6.1.6.3.12.1.5.0": "unknownContexts",
}
NOT_IN_TIME_WINDOW = "1.3.6.1.6.3.15.1.1.2.0"
UNKNOWN_ENGINE_ID = "1.3.6.1.6.3.15.1.1.4.0"


def _iv(boots, time, salt):
    return (boots.to_bytes(4, "big") + time.to_bytes(4, "big") + salt)


# ---------------------------------------------------------------- messages

class Message:
    """A decoded SNMPv3 message, before its security is checked. `auth_at` is the
    offset of the MAC inside `data`; `scoped` is the plaintext ScopedPDU's (start, end)
    or None when `encrypted` holds the encryptedPDU octets."""

    def __init__(self):
        self.data = None
        self.msg_id = 0
        self.max_size = 0
        self.flags = 0
        self.engine_id = b""
        self.boots = 0
        self.time = 0
        self.user = b""
        self.auth_params = b""
        self.auth_at = 0
        self.priv_params = b""
        self.scoped = None
        self.encrypted = None


def _expect(b, pos, end, tag):
    t, s, e = read_tlv(b, pos, end)
    if t != tag:
        raise BERError("expected tag 0x%02x, got 0x%02x" % (tag, t))
    return s, e


def _uint(b, s, e):
    v = decode_int(b, s, e)
    if v < 0 or v > MAX_BOOTS:
        raise BERError("value out of range")
    return v


def decode_message(data):
    """Parse an SNMPv3 message's header and USM parameters (RFC 3412 6, RFC 3414 2.4).
    Raises BERError (only) on malformed input."""
    n = len(data)
    b = memoryview(data)
    s, e = _expect(b, 0, n, SEQUENCE)
    if e != n:
        raise BERError("trailing data")
    s1, p = _expect(b, s, e, INTEGER)
    if decode_int(b, s1, p) != 3:
        raise BERError("not SNMPv3")
    m = Message()
    m.data = data
    gs, ge = _expect(b, p, e, SEQUENCE)
    x, p = _expect(b, gs, ge, INTEGER)
    m.msg_id = _uint(b, x, p)
    x, p = _expect(b, p, ge, INTEGER)
    m.max_size = _uint(b, x, p)
    x, p = _expect(b, p, ge, OCTET_STRING)
    if p - x != 1:
        raise BERError("bad msgFlags")
    m.flags = b[x]
    x, p = _expect(b, p, ge, INTEGER)
    if decode_int(b, x, p) != SECURITY_MODEL_USM or p != ge:
        raise BERError("not USM")
    ss, se = _expect(b, ge, e, OCTET_STRING)
    us, ue = _expect(b, ss, se, SEQUENCE)
    if ue != se:
        raise BERError("trailing data in security parameters")
    x, p = _expect(b, us, ue, OCTET_STRING)
    if p - x > 32:
        raise BERError("engine ID too long")
    m.engine_id = bytes(b[x:p])
    x, p = _expect(b, p, ue, INTEGER)
    m.boots = _uint(b, x, p)
    x, p = _expect(b, p, ue, INTEGER)
    m.time = _uint(b, x, p)
    x, p = _expect(b, p, ue, OCTET_STRING)
    if p - x > 32:
        raise BERError("user name too long")
    m.user = bytes(b[x:p])
    x, p = _expect(b, p, ue, OCTET_STRING)
    m.auth_params = bytes(b[x:p])
    m.auth_at = x
    x, p = _expect(b, p, ue, OCTET_STRING)
    m.priv_params = bytes(b[x:p])
    if p != ue:
        raise BERError("trailing data in security parameters")
    t, x, p = read_tlv(b, se, e)
    if p != e:
        raise BERError("trailing data")
    if t == SEQUENCE:
        m.scoped = (se, e)
    elif t == OCTET_STRING:
        m.encrypted = bytes(b[x:p])
    else:
        raise BERError("bad msgData")
    return m


def _open(b, pos, n, tag):
    # a constructed TLV's tag and length only, its content running past the end of a cut message
    if n - pos < 2 or b[pos] != tag:
        raise BERError("truncated")
    return pos + 2 + (b[pos + 1] & 0x7F if b[pos + 1] & 0x80 else 0)


def cut_head(data):
    """(msgID, msgFlags, engine ID, user name) from the start of an SNMPv3 message that the
    receive buffer cut short (its outer lengths run past the end), or None when the message is
    not v3 or not even its security parameters are whole. Nothing in it is authenticated: the
    MAC covers the whole message."""
    b = memoryview(data)
    n = len(b)
    try:
        pos = _open(b, 0, n, SEQUENCE)
        s, p = _expect(b, pos, n, INTEGER)
        if decode_int(b, s, p) != 3:
            return None
        gs, ge = _expect(b, p, n, SEQUENCE)
        x, p = _expect(b, gs, ge, INTEGER)
        msg_id = _uint(b, x, p)
        x, p = _expect(b, p, ge, INTEGER)
        x, p = _expect(b, p, ge, OCTET_STRING)
        if p - x != 1:
            return None
        flags = b[x]
        ss, se = _expect(b, ge, n, OCTET_STRING)
        us, ue = _expect(b, ss, se, SEQUENCE)
        x, p = _expect(b, us, ue, OCTET_STRING)
        engine_id = bytes(b[x:p])
        x, p = _expect(b, p, ue, INTEGER)
        x, p = _expect(b, p, ue, INTEGER)
        x, p = _expect(b, p, ue, OCTET_STRING)
        return msg_id, flags, engine_id, bytes(b[x:p])
    except BERError:
        return None


def decode_scoped(b, s, e):
    """ScopedPDU -> (contextEngineID, contextName, pdu_start, pdu_end)."""
    s0, e0 = _expect(b, s, e, SEQUENCE)
    if e0 != e:
        raise BERError("trailing data in ScopedPDU")
    x, p = _expect(b, s0, e0, OCTET_STRING)
    ceid = bytes(b[x:p])
    x, p = _expect(b, p, e0, OCTET_STRING)
    cname = bytes(b[x:p])
    return ceid, cname, p, e0


def verify(m, user):
    """True when m carries user's valid MAC (RFC 3414 6.3.2 / 7.3.2)."""
    if not user.auth:
        return False
    ka, _ = user.keys(m.engine_id)
    n = user.mac_len
    if len(m.auth_params) != n:
        return False
    buf = bytearray(m.data)
    buf[m.auth_at:m.auth_at + n] = b"\x00" * n
    return _port.consteq(hmac(user.hash_name, ka, buf)[:n], m.auth_params)


def decrypt(m, user):
    """The plaintext ScopedPDU of an encrypted message; BERError when it cannot be."""
    if len(m.priv_params) != 8 or m.encrypted is None:
        raise BERError("bad privacy parameters")
    _, kp = user.keys(m.engine_id)
    return aes_cfb(kp, _iv(m.boots, m.time, m.priv_params), m.encrypted, True)


def encode_message(msg_id, max_size, user, engine_id, boots, time, scoped_pdu, salt=None,
                   reportable=True, flags=None):
    """An SNMPv3 message carrying scoped_pdu (the encoded ScopedPDU) for user, secured
    at the user's level (flags override it: discovery sends noAuthNoPriv). salt: 8
    octets, needed for privacy."""
    if flags is None:
        flags = user.flags
    if reportable:
        flags |= FLAG_REPORTABLE
    mac_len = user.mac_len if flags & FLAG_AUTH else 0
    priv = b""
    data = scoped_pdu
    if flags & FLAG_PRIV:
        _, kp = user.keys(engine_id)
        priv = bytes(salt)
        data = tlv(OCTET_STRING, aes_cfb(kp, _iv(boots, time, priv), scoped_pdu, False))
    head = (tlv(OCTET_STRING, engine_id) + encode_int(boots) + encode_int(time)
            + tlv(OCTET_STRING, user.name))
    sp_body = head + tlv(OCTET_STRING, b"\x00" * mac_len) + tlv(OCTET_STRING, priv)
    sp = tlv(SEQUENCE, sp_body)
    gd = tlv(SEQUENCE, encode_int(msg_id) + encode_int(max_size)
             + tlv(OCTET_STRING, bytes((flags,))) + encode_int(SECURITY_MODEL_USM))
    ver = encode_int(3)
    body_len = len(ver) + len(gd) + header_len(len(sp)) + len(sp) + len(data)
    out = bytearray(tlv(SEQUENCE, ver + gd + tlv(OCTET_STRING, sp) + data))
    if mac_len:
        at = (header_len(body_len) + len(ver) + len(gd) + header_len(len(sp))
              + header_len(len(sp_body)) + len(head) + header_len(mac_len))
        ka, _ = user.keys(engine_id)
        out[at:at + mac_len] = hmac(user.hash_name, ka, out)[:mac_len]
    return bytes(out)


def encode_scoped(context_engine_id, context_name, pdu):
    return tlv(SEQUENCE, tlv(OCTET_STRING, context_engine_id) + tlv(OCTET_STRING, context_name) + pdu)


class Engine:
    """What a manager knows of one authoritative engine: its ID, and its boots and time
    as of a local tick (RFC 3414 2.3: the time moves on with the local clock)."""

    def __init__(self, engine_id, boots, time):
        self.engine_id = engine_id
        self.set_time(boots, time)

    def set_time(self, boots, time):
        self.boots = boots
        self.time = time
        self.at = _port.ticks_ms()

    def now(self):
        """(boots, estimated time)."""
        t = self.time + _port.ticks_diff(_port.ticks_ms(), self.at) // 1000
        return self.boots, min(t, MAX_BOOTS)

    def in_window(self, boots, time):
        """RFC 3414 3.2.7b for a non-authoritative engine: newer values are learnt;
        an older boots, or a time more than 150 s behind, is outside the window."""
        my_boots, my_time = self.now()
        if boots == MAX_BOOTS or boots < my_boots:
            return False
        if boots > my_boots or time > my_time:
            self.set_time(boots, time)
            return True
        return time >= my_time - TIME_WINDOW
