"""Target specifications: single addresses, CIDR blocks, ranges, host names, optional :port, exclusions.

Addresses are yielded one at a time so a /16 costs no more memory than a /32. Host
names (`printer.local`, `mfp-3.example.com:1161`) are resolved on the box when the
expansion reaches them, not before: a name that does not resolve is logged and
skipped, and the sweep goes on with the next target.
"""
import socket

from fleetbox.errors import FleetboxError
from fleetbox.port import WARN, log


class TargetError(FleetboxError):
    pass


def ip_to_int(s):
    parts = s.split(".")
    if len(parts) != 4:
        raise TargetError("not an IPv4 address: %r" % s)
    n = 0
    for p in parts:
        if not p.isdigit() or len(p) > 3 or int(p) > 255:
            raise TargetError("not an IPv4 address: %r" % s)
        n = (n << 8) | int(p)
    return n


def int_to_ip(n):
    return "%d.%d.%d.%d" % ((n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255)


def is_name(spec):
    """A syntactically valid DNS host name (RFC 1123 labels) whose last label has a
    letter (so no address or range such as 10.0.0.5-7 is taken for a name)."""
    if not spec or len(spec) > 253:
        return False
    labels = spec[:-1].split(".") if spec.endswith(".") else spec.split(".")
    for lab in labels:
        if not lab or len(lab) > 63 or lab[0] == "-" or lab[-1] == "-":
            return False
        for ch in lab:
            if not (ch.isdigit() or ch.isalpha() or ch == "-") or ord(ch) > 127:
                return False
    for ch in labels[-1]:
        if ch.isalpha():
            return True
    return False


def parse(spec, default_port=161):
    """One target spec -> (first, last, port): integers for addresses, or (name, None,
    port) for a host name (resolved later, by expand); raises TargetError with the reason."""
    spec = spec.strip()
    port = default_port
    if spec.count(":") == 1:
        spec, p = spec.split(":")
        if not p.isdigit() or not 0 < int(p) < 65536:
            raise TargetError("bad port in target %r" % spec)
        port = int(p)
    if is_name(spec):
        return spec, None, port
    if "/" in spec:
        addr, bits = spec.split("/", 1)
        if not bits.isdigit() or int(bits) > 32:
            raise TargetError("bad prefix length in %r" % spec)
        bits = int(bits)
        mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
        first = ip_to_int(addr) & mask
        last = first | (~mask & 0xFFFFFFFF)
        if bits <= 30:
            # Skip network and broadcast addresses of real subnets.
            first += 1
            last -= 1
        return first, last, port
    if "-" in spec:
        a, b = spec.split("-", 1)
        first = ip_to_int(a)
        # "10.0.0.5-20" is shorthand for the last octet.
        last = ip_to_int(b) if "." in b else (first & 0xFFFFFF00) | _octet(b, spec)
        if last < first:
            raise TargetError("range %r runs backwards" % spec)
        return first, last, port
    n = ip_to_int(spec)
    return n, n, port


def _octet(s, spec):
    if not s.isdigit() or int(s) > 255:
        raise TargetError("bad range end in %r" % spec)
    return int(s)


def resolve(name, port=161):
    """The IPv4 address of a host name as an integer, or None (logged) when it does not resolve."""
    try:
        addr = socket.getaddrinfo(name, port, socket.AF_INET, socket.SOCK_DGRAM)[0][-1]
    except (OSError, IndexError) as e:
        log("targets", WARN, "cannot resolve host name %r: %s (skipped)" % (name, e))
        return None
    if isinstance(addr, tuple):
        return ip_to_int(addr[0])
    return int.from_bytes(bytes(addr[4:8]), "big")   # MicroPython: a raw sockaddr_in


def expand(specs, exclude=(), default_port=161):
    """Yield (address, port) for every target in specs, minus exclusions, without duplicates per spec.
    Host names are resolved when reached; one that does not resolve is logged and skipped."""
    ranges = [parse(s, default_port) for s in specs]
    excl = []
    for s in exclude:
        a, b, p = parse(s, default_port)
        if b is None:
            a = resolve(a, p)
            if a is None:
                continue
            b = a
        excl.append((a, b))
    for first, last, port in ranges:
        if last is None:
            first = last = resolve(first, port)
            if first is None:
                continue
        n = first
        while n <= last:
            skip = False
            for a, b in excl:
                if a <= n <= b:
                    skip = True
                    break
            if not skip:
                yield int_to_ip(n), port
            n += 1


def count(specs, exclude=(), default_port=161):
    return sum(1 for _ in expand(specs, exclude, default_port))
