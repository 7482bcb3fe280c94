"""Dotted OID strings ("1.3.6.1.2.1.1.1.0"): parsing to arcs, normalising, prefix
tests and numeric comparison, without BER. fleetbox.ber encodes and decodes them and
re-exports these names.
"""
from fleetbox.port import const

MAX_ARC = const(0xFFFFFFFF)


def _bad(msg):
    # fleetbox.ber imports this module, so its BERError is looked up only when raised
    from fleetbox.ber import BERError
    return BERError(msg)


def oid_arcs(oid):
    """"1.3.6.1" (or ".1.3.6.1", or a tuple) -> [1, 3, 6, 1], parsed without making a
    string per arc. Raises BERError on a malformed OID."""
    if isinstance(oid, tuple):
        return list(oid)
    out = []
    v = -1
    first = True
    for c in oid.encode():
        if c == 46:  # "."
            if v < 0:
                if first and not out:
                    first = False
                    continue  # one leading dot
                raise _bad("bad OID %r" % (oid,))
            out.append(v)
            v = -1
        elif 48 <= c <= 57:
            v = c - 48 if v < 0 else v * 10 + c - 48
            if v > MAX_ARC:
                raise _bad("OID arc out of range")
        else:
            raise _bad("bad OID %r" % (oid,))
        first = False
    if v < 0:
        raise _bad("bad OID %r" % (oid,))
    out.append(v)
    return out


def oid_to_tuple(oid):
    """"1.3.6.1" (or ".1.3.6.1") -> (1, 3, 6, 1). Raises BERError on a malformed OID."""
    if isinstance(oid, tuple):
        return oid
    return tuple(oid_arcs(oid))


def tuple_to_oid(t):
    return ".".join(str(a) for a in t)


def oid_normalize(oid):
    """Canonical dotted form (no leading dot) of a str or tuple OID."""
    if isinstance(oid, tuple):
        return tuple_to_oid(oid)
    return oid[1:] if oid[:1] == "." else oid


def oid_startswith(oid, prefix):
    """True if `oid` equals `prefix` or lies under it (component-aware)."""
    if oid == prefix:
        return True
    return oid.startswith(prefix) and oid[len(prefix):len(prefix) + 1] == "."


def oid_compare(a, b):
    """-1, 0 or 1 comparing two dotted OIDs numerically."""
    a = oid_to_tuple(a)
    b = oid_to_tuple(b)
    return (a > b) - (a < b)
