"""CBOR (RFC 8949): the encoder of the box's uploads and a bounded decoder of the cloud's answers.

Output is the *core deterministic encoding* of RFC 8949 section 4.2.1, so the same
value gives the same bytes on MicroPython and CPython:

- definite lengths only, every head (length/argument) in its shortest form;
- int: major type 0/1 for -2**64 .. 2**64-1; beyond that a bignum
  (tag 2 / tag 3 over the big-endian magnitude without leading zero bytes), so
  any Python int is encoded losslessly;
- float: the shortest of float16/float32/float64 that represents the value
  exactly; every NaN is written as the canonical half-precision NaN f9 7e00
  (NaN payloads are not kept), +-inf as f9 7c00 / f9 fc00;
- None -> null (f6), False/True -> f4/f5;
- str -> text string (UTF-8), bytes/bytearray/memoryview -> byte string;
- list/tuple -> array;
- dict -> map; keys must be str or int (not bool); the entries are written
  sorted by the bytewise order of their encoded keys (MicroPython dicts do not
  keep insertion order, so insertion order could not be deterministic).

Anything else raises TypeError; nesting deeper than MAX_DEPTH raises ValueError
(it also stops self-referencing containers).

    dumps(obj) -> bytes
    dump(obj, write)     write: a callable taking bytes (a stream's write,
                         a hash's update, a bytearray's extend ...)
    loads(data, max_depth=8, max_items=512) -> value   bounded decoder of what
                         the encoder writes (no tags, no indefinite lengths);
                         raises DecodeError (a ValueError)
"""
import struct

from fleetbox.errors import FleetboxError

MAX_DEPTH = 32  # most containers (arrays, maps) nested in one another

_U64 = 0x10000000000000000
_F16_NAN = b"\xf9\x7e\x00"
_F16_INF = b"\xf9\x7c\x00"
_F16_NINF = b"\xf9\xfc\x00"


def _head(major, n, write):
    mt = major << 5
    if n < 24:
        write(bytes((mt | n,)))
    elif n < 0x100:
        write(bytes((mt | 24, n)))
    elif n < 0x10000:
        write(struct.pack(">BH", mt | 25, n))
    elif n < 0x100000000:
        write(struct.pack(">BI", mt | 26, n))
    else:
        write(struct.pack(">BQ", mt | 27, n))


def _bignum(tag, m, write):
    # m >= 2**64: big-endian magnitude, no leading zero bytes
    out = bytearray()
    while m:
        out.append(m & 0xFF)
        m >>= 8
    out = bytes(reversed(out))
    _head(6, tag, write)
    _head(2, len(out), write)
    write(out)


def _float(x, write):
    if x != x:
        write(_F16_NAN)
        return
    if x == float("inf"):
        write(_F16_INF)
        return
    if x == float("-inf"):
        write(_F16_NINF)
        return
    try:
        f32 = struct.pack(">f", x)
        exact32 = struct.unpack(">f", f32)[0] == x
    except OverflowError:  # CPython; MicroPython returns inf, which != x
        exact32 = False
    if not exact32:
        write(b"\xfb")
        write(struct.pack(">d", x))
        return
    bits = struct.unpack(">I", f32)[0]
    sign = (bits >> 16) & 0x8000
    exp = (bits >> 23) & 0xFF
    mant = bits & 0x7FFFFF
    half = -1
    if exp == 0 and mant == 0:
        half = sign
    elif exp:
        e = exp - 127
        if -14 <= e <= 15:
            if not mant & 0x1FFF:
                half = sign | ((e + 15) << 10) | (mant >> 13)
        elif -24 <= e < -14:
            # half subnormal: value = m * 2**-24
            sig = 0x800000 | mant
            shift = -1 - e
            if not sig & ((1 << shift) - 1):
                half = sign | (sig >> shift)
    if half >= 0:
        write(struct.pack(">BH", 0xF9, half))
    else:
        write(b"\xfa")
        write(f32)


def _key(k):
    if type(k) is bool or not isinstance(k, (str, int)):
        raise TypeError("cbor: map key must be str or int, not %s" % type(k).__name__)
    buf = bytearray()
    _enc(k, buf.extend, 0)
    return bytes(buf)


def _first(item):
    return item[0]


def _enc(obj, write, depth):
    if obj is None:
        write(b"\xf6")
    elif obj is True:
        write(b"\xf5")
    elif obj is False:
        write(b"\xf4")
    elif isinstance(obj, int):
        if obj >= 0:
            if obj < _U64:
                _head(0, obj, write)
            else:
                _bignum(2, obj, write)
        else:
            m = -1 - obj
            if m < _U64:
                _head(1, m, write)
            else:
                _bignum(3, m, write)
    elif isinstance(obj, float):
        _float(obj, write)
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        _head(3, len(b), write)
        write(b)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        _head(2, len(obj), write)
        write(obj)
    elif isinstance(obj, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise ValueError("cbor: nesting deeper than %d" % MAX_DEPTH)
        _head(4, len(obj), write)
        for v in obj:
            _enc(v, write, depth + 1)
    elif isinstance(obj, dict):
        if depth >= MAX_DEPTH:
            raise ValueError("cbor: nesting deeper than %d" % MAX_DEPTH)
        items = [(_key(k), v) for k, v in obj.items()]
        items.sort(key=_first)
        _head(5, len(items), write)
        for k, v in items:
            write(k)
            _enc(v, write, depth + 1)
    else:
        raise TypeError("cbor: cannot encode %s" % type(obj).__name__)


def dump(obj, write):
    """Encode obj, handing the bytes to write() piece by piece."""
    _enc(obj, write, 0)


def dumps(obj):
    """Encode obj and return the CBOR bytes."""
    buf = bytearray()
    _enc(obj, buf.extend, 0)
    return bytes(buf)


# -- decoder: bounded, for the cloud's answers (docs/downlink.md); refuses what the encoder above never writes

class DecodeError(FleetboxError):
    pass


class _Dec:
    def __init__(self, data, max_depth, max_items):
        self.b = data
        self.i = 0
        self.depth = max_depth
        self.items = max_items

    def take(self, n):
        i = self.i
        if n > len(self.b) - i:
            raise DecodeError("cbor: truncated")
        self.i = i + n
        return self.b[i:i + n]

    def arg(self, info):
        if info < 24:
            return info
        if info == 24:
            return self.take(1)[0]
        if info == 25:
            return struct.unpack(">H", self.take(2))[0]
        if info == 26:
            return struct.unpack(">I", self.take(4))[0]
        if info == 27:
            return struct.unpack(">Q", self.take(8))[0]
        raise DecodeError("cbor: indefinite or reserved length")

    def item(self, depth):
        self.items -= 1
        if self.items < 0:
            raise DecodeError("cbor: too many items")
        ib = self.take(1)[0]
        major, info = ib >> 5, ib & 31
        if major == 7:
            return self.simple(info)
        n = self.arg(info)
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2:
            return bytes(self.take(n))
        if major == 3:
            try:
                return bytes(self.take(n)).decode("utf-8")
            except UnicodeError:
                raise DecodeError("cbor: bad UTF-8")
        if major == 6:
            raise DecodeError("cbor: tags are not accepted")
        if depth >= self.depth:
            raise DecodeError("cbor: nesting deeper than %d" % self.depth)
        # Each element takes at least one byte: a count beyond the bytes left is a lie, not an allocation.
        if n > len(self.b) - self.i:
            raise DecodeError("cbor: truncated")
        if major == 4:
            return [self.item(depth + 1) for _ in range(n)]
        out = {}
        for _ in range(n):
            k = self.item(depth + 1)
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise DecodeError("cbor: map key must be text or an integer")
            if k in out:
                raise DecodeError("cbor: duplicate map key")
            out[k] = self.item(depth + 1)
        return out

    def simple(self, info):
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info == 25:
            return _half(struct.unpack(">H", self.take(2))[0])
        if info == 26:
            return struct.unpack(">f", self.take(4))[0]
        if info == 27:
            return struct.unpack(">d", self.take(8))[0]
        raise DecodeError("cbor: simple value %d not accepted" % info)


def _half(h):
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if exp == 0:
        v = mant * 2.0 ** -24
    elif exp == 31:
        v = float("nan") if mant else float("inf")
    else:
        v = (1024 + mant) * 2.0 ** (exp - 25)
    return -v if h & 0x8000 else v


def loads(data, max_depth=8, max_items=512):
    """Decode exactly one CBOR item that fills `data`; DecodeError (a ValueError) for anything
    else. Bounded: nesting `max_depth`, `max_items` items in all, and no length is believed
    beyond the bytes present, so hostile input costs at most about len(data) of memory."""
    d = _Dec(memoryview(data), max_depth, max_items)
    v = d.item(0)
    if d.i != len(data):
        raise DecodeError("cbor: %d bytes after the item" % (len(data) - d.i))
    return v
