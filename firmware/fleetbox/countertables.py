"""Vendor counter tables and blobs (docs/profiles.md "Counter tables and blobs").

Makers keep by-function counters in a type/value table (Ricoh, Lexmark) or in one
octet string of id/length/value records (Brother). A profile maps type codes or ids to
record counters; these pure functions turn what the device answered into counters, so the
collector only walks and GETs. Bounded: at most MAX_ROWS rows, MAX_BLOB bytes.
"""
import binascii

from fleetbox import records

MAX_ROWS = 256
MAX_BLOB = 1024
MAX_VALUE_LEN = 8


def wants(spec, into):
    """Record keys of `spec` not yet known in `into` (a counters object)."""
    out = []
    vendor = into.get("vendor") or {}
    for key in spec["map"]:
        known = vendor if key.startswith("vendor.") else into
        if key.split(".", 1)[-1] not in known:
            out.append(key)
    return out


def _put(key, value, into, sources, what):
    if key.startswith("vendor."):
        name = key[7:]
        into.setdefault("vendor", {})[name] = value
        sources["counters.vendor." + name] = what
    else:
        into[key] = value
        sources["counters." + key] = what


def _codes(ranges):
    return "+".join(str(lo) if lo == hi else "%d-%d" % (lo, hi) for lo, hi in ranges)


def table(spec, types, values, into, sources):
    """Fill `into` from one table. types/values: {row index: value} of the type and value
    columns. A key's counter is the sum over the rows whose type is in its ranges; no
    matching row, or a matching row without a non-negative integer value, is no counter."""
    for key in wants(spec, into):
        ranges = spec["map"][key]
        total, found = 0, False
        for idx, t in types.items():
            t = records.integer(t)
            if t is None:
                continue
            for lo, hi in ranges:
                if lo <= t <= hi:
                    v = records.integer(values.get(idx))
                    if v is None or v < 0:
                        found, total = False, None
                    elif total is not None:
                        found, total = True, total + v
                    break
            if total is None:
                break
        if found and total is not None:
            _put(key, total, into, sources, "table %s type %s" % (spec["table"], _codes(ranges)))


def tlv(data):
    """{id: value} from id byte, length byte (1-8), big-endian value records; ends at the
    data's end or an id 0xFF. Raises ValueError on a record running past the end."""
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError("not an octet string")
    if len(data) > MAX_BLOB:
        raise ValueError("blob over %d bytes" % MAX_BLOB)
    if len(data) % 2 == 0 and data and all(c in b"0123456789abcdefABCDEF" for c in data):
        data = binascii.unhexlify(data)     # some agents answer the blob as hex text
    out = {}
    i = 0
    while i < len(data):
        ident = data[i]
        if ident == 0xFF:
            break
        if i + 2 > len(data):
            raise ValueError("record at %d cut short" % i)
        n = data[i + 1]
        if not 1 <= n <= MAX_VALUE_LEN or i + 2 + n > len(data):
            raise ValueError("record 0x%02x at %d: bad length %d" % (ident, i, n))
        v = 0
        for b in data[i + 2:i + 2 + n]:
            v = (v << 8) | b
        out[ident] = v
        i += 2 + n
    return out


def blob(spec, value, into, sources):
    """Fill `into` from one blob value; a key's counter is the sum of its ids (all must be
    there). Returns an error text for a malformed blob (nothing filled), else None."""
    if value is None:
        return None
    try:
        found = tlv(value)
    except ValueError as e:
        return "blob %s: %s" % (spec["oid"], e)
    for key in wants(spec, into):
        ids = spec["map"][key]
        if all(i in found for i in ids):
            _put(key, sum(found[i] for i in ids), into, sources,
                 "blob %s id %s" % (spec["oid"], "+".join("0x%02x" % i for i in ids)))
    return None
