"""Target specifications: single addresses, CIDR blocks, ranges, optional :port, exclusions.

Addresses are yielded one at a time so a /16 costs no more memory than a /32.
"""


class TargetError(ValueError):
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


def parse(spec, default_port=161):
    """One target spec -> (first, last, port) as integers; raises TargetError with the reason."""
    spec = spec.strip()
    port = default_port
    if spec.count(":") == 1:
        spec, p = spec.split(":")
        if not p.isdigit() or not 0 < int(p) < 65536:
            raise TargetError("bad port in target %r" % spec)
        port = int(p)
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


def expand(specs, exclude=(), default_port=161):
    """Yield (address, port) for every target in specs, minus exclusions, without duplicates per spec."""
    ranges = [parse(s, default_port) for s in specs]
    excl = [parse(s, default_port)[:2] for s in exclude]
    for first, last, port in ranges:
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
