"""BER codec for SNMP (the subset of X.690 that SNMP v1/v2c messages use).

Decoding works on bytes/bytearray/memoryview with explicit (start, end) offsets,
so nothing is copied except the values handed out. Every malformed, truncated,
oversized or hostile input raises BERError, and only BERError.

Decoded values:
  INTEGER, Counter32, Gauge32, TimeTicks, Counter64 -> int
  OCTET STRING, Opaque                              -> bytes
  OBJECT IDENTIFIER                                 -> str "1.3.6.1.2.1.1.1.0"
  IpAddress                                         -> str "a.b.c.d"
  NULL                                              -> None
  noSuchObject / noSuchInstance / endOfMibView      -> NO_SUCH_OBJECT / NO_SUCH_INSTANCE / END_OF_MIB_VIEW
  any other tag                                     -> (tag, bytes of its content)
"""
from fleetbox.port import const
from fleetbox.errors import FleetboxError
from fleetbox.oid import (  # noqa: F401 (re-exported: callers use ber.oid_compare, ...)
    MAX_ARC, oid_arcs, oid_to_tuple, tuple_to_oid, oid_normalize, oid_startswith, oid_compare,
)

INTEGER = const(0x02)
OCTET_STRING = const(0x04)
NULL = const(0x05)
OID = const(0x06)
SEQUENCE = const(0x30)
IPADDRESS = const(0x40)
COUNTER32 = const(0x41)
GAUGE32 = const(0x42)
TIMETICKS = const(0x43)
OPAQUE = const(0x44)
COUNTER64 = const(0x46)
NO_SUCH_OBJECT_TAG = const(0x80)
NO_SUCH_INSTANCE_TAG = const(0x81)
END_OF_MIB_VIEW_TAG = const(0x82)

GET = const(0xA0)
GETNEXT = const(0xA1)
RESPONSE = const(0xA2)
SET = const(0xA3)
GETBULK = const(0xA5)
INFORM = const(0xA6)
TRAP = const(0xA7)
REPORT = const(0xA8)

MAX_DEPTH = const(8)        # nesting of constructed values in decode()
MAX_INT_LEN = const(9)      # content octets of any integer (Counter64 needs 9)
MAX_OID_ARCS = const(128)   # RFC 2578 3.5


class BERError(FleetboxError):
    pass


class ExceptionValue:
    """A varbind exception (v2c): compare with `is` against the module singletons."""

    def __init__(self, tag, name):
        self.tag = tag
        self.name = name

    def __repr__(self):
        return self.name

    __str__ = __repr__


NO_SUCH_OBJECT = ExceptionValue(0x80, "noSuchObject")
NO_SUCH_INSTANCE = ExceptionValue(0x81, "noSuchInstance")
END_OF_MIB_VIEW = ExceptionValue(0x82, "endOfMibView")
_EXCEPTIONS = (NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW)


def is_exception(value):
    return isinstance(value, ExceptionValue)


# ------------------------------------------------------------------- decoding

def read_tlv(b, pos, end):
    """Read one TLV header at b[pos:end]; return (tag, content_start, content_end)."""
    if end - pos < 2:
        raise BERError("truncated")
    tag = b[pos]
    if tag & 0x1F == 0x1F:
        raise BERError("multi-byte tag")
    n = b[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0:
            raise BERError("indefinite length")
        if k > 4:
            raise BERError("length of length > 4")
        if end - pos < k:
            raise BERError("truncated length")
        n = 0
        for i in range(pos, pos + k):
            n = (n << 8) | b[i]
        pos += k
    if n > end - pos:
        raise BERError("length exceeds data")
    return tag, pos, pos + n


def decode_int(b, s, e):
    n = e - s
    if n == 0:
        raise BERError("empty integer")
    if n > MAX_INT_LEN:
        raise BERError("integer too long")
    v = b[s]
    if v & 0x80:
        v -= 256
    for i in range(s + 1, e):
        v = (v << 8) | b[i]
    return v


def decode_unsigned(b, s, e, bits=32):
    """Unsigned application types. Agents that forget the leading zero octet
    (encoding 2**31..2**32-1 as a negative number) are read modulo 2**bits."""
    v = decode_int(b, s, e)
    if v < 0:
        v += 1 << bits
    if v < 0 or v >> bits:
        raise BERError("unsigned value out of range")
    return v


def _digits(out, pos, v):
    """Write v in decimal into out[pos:]; return the new position (no allocation)."""
    if v < 10:
        out[pos] = 48 + v
        return pos + 1
    i = pos
    while v:
        out[i] = 48 + v % 10
        v //= 10
        i += 1
    j = i - 1
    while pos < j:
        out[pos], out[j] = out[j], out[pos]
        pos += 1
        j -= 1
    return i


def decode_oid(b, s, e):
    """OID content b[s:e] -> dotted str, built in one buffer (no string per arc)."""
    if s >= e:
        raise BERError("empty OID")
    if e - s > MAX_OID_ARCS * 5:
        raise BERError("OID too long")
    # each content octet adds at most 3 digits and a dot; the first adds "2." too
    out = bytearray((e - s) * 4 + 4)
    pos = 0
    v = 0
    nb = 0
    count = 0
    for i in range(s, e):
        c = b[i]
        if nb == 0 and c == 0x80:
            raise BERError("non-minimal OID arc")
        v = (v << 7) | (c & 0x7F)
        nb += 1
        if nb > 5 or v > MAX_ARC:
            raise BERError("OID arc too large")
        if c & 0x80:
            continue
        if count == 0:
            x = 0 if v < 40 else (1 if v < 80 else 2)
            out[0] = 48 + x
            out[1] = 46
            pos = _digits(out, 2, v - 40 * x)
            count = 2
        else:
            count += 1
            if count > MAX_OID_ARCS:
                raise BERError("too many OID arcs")
            out[pos] = 46
            pos = _digits(out, pos + 1, v)
        v = 0
        nb = 0
    if nb:
        raise BERError("truncated OID")
    return str(out[:pos], "ascii")


def decode_value(tag, b, s, e):
    """Decode one primitive value whose content is b[s:e]."""
    if tag == INTEGER:
        return decode_int(b, s, e)
    if tag == OCTET_STRING or tag == OPAQUE:
        return bytes(b[s:e])
    if tag == OID:
        return decode_oid(b, s, e)
    if tag == COUNTER32 or tag == GAUGE32 or tag == TIMETICKS:
        return decode_unsigned(b, s, e, 32)
    if tag == COUNTER64:
        return decode_unsigned(b, s, e, 64)
    if tag == NULL or NO_SUCH_OBJECT_TAG <= tag <= END_OF_MIB_VIEW_TAG:
        if e != s:
            raise BERError("non-empty NULL")
        return None if tag == NULL else _EXCEPTIONS[tag - NO_SUCH_OBJECT_TAG]
    if tag == IPADDRESS:
        if e - s != 4:
            raise BERError("IpAddress length")
        return "%d.%d.%d.%d" % (b[s], b[s + 1], b[s + 2], b[s + 3])
    return (tag, bytes(b[s:e]))


def _decode(b, pos, end, depth):
    tag, s, e = read_tlv(b, pos, end)
    if tag & 0x20:
        if depth >= MAX_DEPTH:
            raise BERError("nesting too deep")
        items = []
        p = s
        while p < e:
            item, p = _decode(b, p, e, depth + 1)
            items.append(item)
        return (tag, items), e
    return (tag, decode_value(tag, b, s, e)), e


def decode(data):
    """Decode exactly one TLV filling `data` into (tag, value); constructed values
    (SEQUENCE, PDUs) become (tag, [(tag, value), ...])."""
    b = memoryview(data)
    item, p = _decode(b, 0, len(b), 0)
    if p != len(b):
        raise BERError("trailing data")
    return item


# ------------------------------------------------------------------- encoding

def encode_length(n):
    if n < 0x80:
        return bytes((n,))
    if n < 0x100:
        return bytes((0x81, n))
    if n < 0x10000:
        return bytes((0x82, n >> 8, n & 0xFF))
    if n < 0x1000000:
        return bytes((0x83, n >> 16, (n >> 8) & 0xFF, n & 0xFF))
    if n < 0x100000000:
        return bytes((0x84, n >> 24, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF))
    raise BERError("length too large")


def header_len(n):
    """Octets taken by the tag and length of a TLV with n content octets."""
    if n < 0x80:
        return 2
    return 3 if n < 0x100 else (4 if n < 0x10000 else (5 if n < 0x1000000 else 6))


def put_header(out, pos, tag, n):
    """Write tag and length of n at out[pos:]; return the position after them."""
    out[pos] = tag
    if n < 0x80:
        out[pos + 1] = n
        return pos + 2
    k = header_len(n) - 2
    out[pos + 1] = 0x80 | k
    for i in range(k):
        out[pos + 1 + k - i] = (n >> (8 * i)) & 0xFF
    return pos + 2 + k


def tlv(tag, content):
    n = len(content)
    if n >= 0x100000000:
        raise BERError("length too large")
    out = bytearray(header_len(n) + n)
    pos = put_header(out, 0, tag, n)
    out[pos:] = content
    return bytes(out)


def encode_int(v, tag=INTEGER):
    """Signed INTEGER (two's complement, minimal length)."""
    n = 1
    if v >= 0:
        while v >= 1 << (8 * n - 1):
            n += 1
    else:
        while v < -(1 << (8 * n - 1)):
            n += 1
    if n > MAX_INT_LEN:
        raise BERError("integer too large")
    out = bytearray(n + 2)
    out[0] = tag
    out[1] = n
    for i in range(n):
        out[n + 1 - i] = (v >> (8 * i)) & 0xFF
    return bytes(out)


def encode_unsigned(v, tag=GAUGE32, bits=32):
    if v < 0 or v >> bits:
        raise BERError("unsigned value out of range")
    return encode_int(v, tag)


def encode_counter32(v):
    return encode_unsigned(v, COUNTER32)


def encode_gauge32(v):
    return encode_unsigned(v, GAUGE32)


def encode_timeticks(v):
    return encode_unsigned(v, TIMETICKS)


def encode_counter64(v):
    return encode_unsigned(v, COUNTER64, 64)


def encode_octets(v, tag=OCTET_STRING):
    if isinstance(v, str):
        v = v.encode()
    return tlv(tag, bytes(v))


def encode_null(tag=NULL):
    return bytes((tag, 0))


def encode_exception(exc):
    return bytes((exc.tag, 0))


def encode_ip(v):
    if isinstance(v, str):
        try:
            v = bytes(int(x) for x in v.split("."))
        except ValueError:
            raise BERError("bad IpAddress")
    if len(v) != 4:
        raise BERError("bad IpAddress")
    return tlv(IPADDRESS, bytes(v))


def _arc(out, a):
    if a < 0 or a > MAX_ARC:
        raise BERError("OID arc out of range")
    if a >= 0x80:
        k = 7
        while a >> (k + 7):
            k += 7
        while k:
            out.append(0x80 | ((a >> k) & 0x7F))
            k -= 7
    out.append(a & 0x7F)


def encode_oid(oid):
    """OBJECT IDENTIFIER from a dotted str (leading dot allowed) or a tuple of ints."""
    t = oid_arcs(oid)
    if len(t) < 2 or len(t) > MAX_OID_ARCS or t[0] > 2 or (t[0] < 2 and t[1] >= 40):
        raise BERError("bad OID %r" % (oid,))
    out = bytearray(2)
    out[0] = OID
    _arc(out, 40 * t[0] + t[1])
    for i in range(2, len(t)):
        _arc(out, t[i])
    if len(out) < 130:
        out[1] = len(out) - 2
        return bytes(out)
    return tlv(OID, bytes(out[2:]))


def encode(tag, value):
    """Inverse of decode(): constructed tags take a list of (tag, value) pairs."""
    if tag & 0x20:
        return tlv(tag, b"".join(encode(t, v) for t, v in value))
    if tag == INTEGER:
        return encode_int(value)
    if tag == OCTET_STRING or tag == OPAQUE:
        return encode_octets(value, tag)
    if tag == OID:
        return encode_oid(value)
    if tag == COUNTER32 or tag == GAUGE32 or tag == TIMETICKS:
        return encode_unsigned(value, tag)
    if tag == COUNTER64:
        return encode_counter64(value)
    if tag == NULL or NO_SUCH_OBJECT_TAG <= tag <= END_OF_MIB_VIEW_TAG:
        return encode_null(tag)
    if tag == IPADDRESS:
        return encode_ip(value)
    if isinstance(value, tuple):
        value = value[1]
    return tlv(tag, bytes(value))
