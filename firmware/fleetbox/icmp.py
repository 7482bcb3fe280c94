"""ICMP echo: does an address answer ping? A reachability signal beside SNMP.

A printer whose SNMP agent is off still answers ping; an absent address does not. The
box asks only about devices that fell silent (never while sweeping), one echo each.

Where the platform allows it: an unprivileged ping socket (Linux, when the box's group is
in net.ipv4.ping_group_range), else a raw socket (privileged); lwIP builds with raw
sockets likewise. Where neither opens, ping() says None ("cannot tell") and nothing else
changes. Replies are matched by sequence number and, on a raw socket (which sees every
echo reply of the host), by identifier and source address.
"""
from fleetbox.port import sleep_ms, ticks_diff, ticks_ms

ECHO_REQUEST = 8
ECHO_REPLY = 0
IPPROTO_ICMP = 1
SOCK_RAW = 3
POLL_MS = 10
PAYLOAD = b"fleetbox"


def checksum(data):
    """The Internet checksum (RFC 1071) of data."""
    s = 0
    n = len(data)
    for i in range(0, n - 1, 2):
        s += (data[i] << 8) | data[i + 1]
    if n % 2:
        s += data[n - 1] << 8
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def echo_request(ident, seq, payload=PAYLOAD):
    """An ICMP echo request, checksum filled in."""
    msg = bytearray(8 + len(payload))
    msg[0] = ECHO_REQUEST
    msg[4], msg[5] = ident >> 8 & 0xFF, ident & 0xFF
    msg[6], msg[7] = seq >> 8 & 0xFF, seq & 0xFF
    msg[8:] = payload
    c = checksum(msg)
    msg[2], msg[3] = c >> 8, c & 0xFF
    return bytes(msg)


def is_reply(data, ident, seq, raw):
    """Whether data (an IPv4 packet from a raw socket, or the ICMP message alone from a
    ping socket, whose identifier the kernel chose) is the echo reply to (ident, seq)."""
    if raw:
        if len(data) < 20 or data[0] >> 4 != 4:
            return False
        data = data[(data[0] & 0x0F) * 4:]
    if len(data) < 8 or data[0] != ECHO_REPLY or data[1] != 0:
        return False
    if checksum(data) != 0:
        return False
    if raw and ((data[4] << 8) | data[5]) != ident:
        return False
    return ((data[6] << 8) | data[7]) == seq


def open_socket():
    """(socket, raw) for echo, or (None, None) where the platform refuses both kinds."""
    import socket
    for kind, raw in ((socket.SOCK_DGRAM, False), (getattr(socket, "SOCK_RAW", SOCK_RAW), True)):
        try:
            s = socket.socket(socket.AF_INET, kind, IPPROTO_ICMP)
        except (OSError, ValueError):
            continue
        s.setblocking(False)
        return s, raw
    return None, None


_seq = [0]


async def ping(host, timeout_ms=1000, sock=None, raw=None):
    """True: host answered one echo within timeout_ms; False: it did not; None: this
    platform cannot send ICMP echo (no ping or raw socket). `sock`/`raw`: an open
    socket of open_socket()'s kind, kept by the caller for several pings."""
    own = sock is None
    if own:
        sock, raw = open_socket()
        if sock is None:
            return None
    import socket
    try:
        _seq[0] = (_seq[0] + 1) & 0xFFFF
        seq = _seq[0]
        ident = (id(sock) >> 4) & 0xFFFF
        addr = socket.getaddrinfo(host, 0)[0][-1]
        try:
            sock.sendto(echo_request(ident, seq), addr)
        except OSError:
            return False        # no route, host down reported at once
        start = ticks_ms()
        while ticks_diff(ticks_ms(), start) < timeout_ms:
            try:
                data, src = sock.recvfrom(256)
            except OSError:
                await sleep_ms(POLL_MS)
                continue
            if raw and _source(src) != host:
                continue
            if is_reply(data, ident, seq, raw):
                return True
        return False
    finally:
        if own:
            sock.close()


def _source(src):
    """The dotted address of a recvfrom() source (a tuple on CPython, bytes on MicroPython)."""
    if isinstance(src, tuple):
        return src[0]
    b = bytes(src)
    return "%d.%d.%d.%d" % (b[4], b[5], b[6], b[7]) if len(b) >= 8 else ""
