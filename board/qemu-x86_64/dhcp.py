"""The qemu-x86_64 board's DHCP client (RFC 2131) and its interface set-up, on MicroPython alone.

A UDP socket on port 68 bound to the interface (SO_BINDTODEVICE lets the kernel send
to 255.255.255.255 before the interface has an address); replies are asked for by
broadcast. Bound, the client sets the address, mask and default route with the
classic ioctls (SIOCSIFADDR, SIOCSIFNETMASK, SIOCADDRT) and writes /etc/resolv.conf;
it renews at T1 (unicast to its server), rebinds at T2 (broadcast) and drops the
address when the lease runs out. `poll()` never blocks: the board calls it from the
firmware's loop.
"""
import os
import socket
import struct
import time

SOL_SOCKET = 1
SO_REUSEADDR = 2
SO_BROADCAST = 6
SO_BINDTODEVICE = 25
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCADDRT = 0x890B
IFF_UP = 0x1
RTF_UP = 0x1
RTF_GATEWAY = 0x2
AF_INET = 2

MAGIC_COOKIE = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_REQ_IP, OPT_LEASE, OPT_TYPE, OPT_SERVER, OPT_PARAMS = 1, 3, 6, 50, 51, 53, 54, 55
OPT_T1, OPT_T2, OPT_END = 58, 59, 255

INIT, SELECTING, REQUESTING = "init", "selecting", "requesting"
BOUND, RENEWING, REBINDING = "bound", "renewing", "rebinding"
RETRY_MS = 2000           # first retransmission; doubles up to MAX_RETRY_MS (RFC 2131 4.1)
MAX_RETRY_MS = 16000
MIN_LEASE_S = 20


def ip_bytes(text):
    return bytes(int(x) for x in text.split("."))


def ip_text(b):
    return "%d.%d.%d.%d" % (b[0], b[1], b[2], b[3])


def sockaddr_in(ip):
    """struct sockaddr_in for ip (4 bytes): family, port 0, address, zero padding."""
    return struct.pack("<HH", AF_INET, 0) + ip + b"\0" * 8


def _ifreq(ifname, tail):
    return bytearray(ifname.encode() + b"\0" * (16 - len(ifname)) + tail + b"\0" * (24 - len(tail)))


class Interface:
    """One network interface, configured through ioctls on a datagram socket."""

    def __init__(self, name):
        self.name = name
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._fd = self._sock.fileno()

    def _ioctl(self, request, buf):
        import rom   # the ROM's libc ioctl (imported here so the codec also runs on CPython)
        if rom.ioctl(self._fd, request, buf) != 0:
            raise OSError(os.errno())
        return buf

    def up(self):
        req = self._ioctl(SIOCGIFFLAGS, _ifreq(self.name, b""))
        flags = struct.unpack_from("<H", req, 16)[0]
        struct.pack_into("<H", req, 16, flags | IFF_UP)
        self._ioctl(SIOCSIFFLAGS, req)

    def configure(self, address, mask, router):
        """Set address and mask (4 bytes each) and, when given, the default route via router."""
        self._ioctl(SIOCSIFADDR, _ifreq(self.name, sockaddr_in(address)))
        self._ioctl(SIOCSIFNETMASK, _ifreq(self.name, sockaddr_in(mask)))
        if router:
            # struct rtentry (x86-64): pad, dst, gateway, genmask, flags ... (rest zero: any device)
            rt = bytearray(120)
            rt[8:24] = sockaddr_in(b"\0\0\0\0")
            rt[24:40] = sockaddr_in(router)
            rt[40:56] = sockaddr_in(b"\0\0\0\0")
            struct.pack_into("<H", rt, 56, RTF_UP | RTF_GATEWAY)
            try:
                self._ioctl(SIOCADDRT, rt)
            except OSError as e:
                if e.args[0] != 17:   # EEXIST: the same route from the lease before
                    raise

    def deconfigure(self):
        # Address 0.0.0.0 removes the address, and the kernel drops its routes with it.
        try:
            self._ioctl(SIOCSIFADDR, _ifreq(self.name, sockaddr_in(b"\0\0\0\0")))
        except OSError:
            pass

    def read(self, attr, default=""):
        try:
            with open("/sys/class/net/%s/%s" % (self.name, attr)) as f:
                return f.read().strip()
        except OSError:
            return default


def build(kind, xid, mac, ciaddr=b"\0\0\0\0", requested=None, server=None):
    """A BOOTREQUEST carrying DHCP message `kind`; broadcast flag set unless renewing (ciaddr)."""
    flags = 0 if ciaddr != b"\0\0\0\0" else 0x8000
    msg = bytearray(240)
    struct.pack_into(">BBBBIHH", msg, 0, 1, 1, 6, 0, xid, 0, flags)
    msg[12:16] = ciaddr
    msg[28:34] = mac
    msg[236:240] = MAGIC_COOKIE
    opts = bytearray([OPT_TYPE, 1, kind])
    if requested:
        opts += bytes([OPT_REQ_IP, 4]) + requested
    if server:
        opts += bytes([OPT_SERVER, 4]) + server
    opts += bytes([OPT_PARAMS, 6, OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_LEASE, OPT_T1, OPT_T2, OPT_END])
    return msg + opts


def parse(data, xid, mac):
    """(message type, your address, {option: bytes}) of a BOOTREPLY for us, or None."""
    if len(data) < 241 or data[0] != 2 or data[236:240] != MAGIC_COOKIE:
        return None
    if struct.unpack_from(">I", data, 4)[0] != xid or bytes(data[28:34]) != mac:
        return None
    opts = {}
    i = 240
    while i < len(data):
        code = data[i]
        if code == OPT_END:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(data) or i + 2 + data[i + 1] > len(data):
            return None   # an option running past the datagram: not a message we trust
        opts[code] = bytes(data[i + 2:i + 2 + data[i + 1]])
        i += 2 + data[i + 1]
    if OPT_TYPE not in opts or len(opts[OPT_TYPE]) != 1:
        return None
    for code in (OPT_MASK, OPT_ROUTER, OPT_SERVER, OPT_LEASE, OPT_T1, OPT_T2):
        if code in opts and len(opts[code]) < 4:
            return None
    return opts[OPT_TYPE][0], bytes(data[16:20]), opts


def _u32(b):
    return struct.unpack(">I", b[:4])[0]


class Client:
    def __init__(self, ifname="eth0", log=print):
        self.log = log
        self.iface = Interface(ifname)
        self.iface.up()
        mac = self.iface.read("address")
        self.mac = bytes(int(x, 16) for x in mac.split(":"))
        self.state = INIT
        self.lease = None        # {"address", "mask", "router", "dns", "server", "lease_s"} while bound
        self.address = None      # the configured address as text
        self._sock = None
        self._xid = 0
        self._offer = None
        self._next_ms = 0        # ticks when the next transmission is due
        self._retry_ms = RETRY_MS
        self._bound_ms = 0
        self._buf = bytearray(576)

    # -- socket
    def _socket(self):
        if self._sock is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
            s.setsockopt(SOL_SOCKET, SO_BROADCAST, 1)
            s.setsockopt(SOL_SOCKET, SO_BINDTODEVICE, self.iface.name.encode())
            s.bind(socket.getaddrinfo("0.0.0.0", 68)[0][-1])
            s.setblocking(False)
            self._sock = s
        return self._sock

    def _send(self, msg, to=b"\xff\xff\xff\xff"):
        try:
            self._socket().sendto(msg, socket.getaddrinfo(ip_text(to), 67)[0][-1])
        except OSError as e:
            self.log("dhcp: send failed: %s" % e)

    # -- state machine
    def restart(self):
        """Start again from INIT (cable plugged back in): ask for the address held before."""
        self.state = INIT
        self._next_ms = time.ticks_ms()

    def _transmit(self, now):
        ciaddr = b"\0\0\0\0"
        if self.state in (INIT, SELECTING):
            self.state = SELECTING
            self._xid = struct.unpack("<I", os.urandom(4))[0]
            previous = self.lease["address"] if self.lease else None
            msg = build(DISCOVER, self._xid, self.mac, requested=previous)
            to = b"\xff\xff\xff\xff"
        elif self.state == REQUESTING:
            o = self._offer
            msg = build(REQUEST, self._xid, self.mac, requested=o["address"], server=o["server"])
            to = b"\xff\xff\xff\xff"
        else:   # RENEWING (unicast to the server) or REBINDING (broadcast to any)
            ciaddr = self.lease["address"]
            msg = build(REQUEST, self._xid, self.mac, ciaddr=ciaddr)
            to = self.lease["server"] if self.state == RENEWING else b"\xff\xff\xff\xff"
        self._send(msg, to)
        self._next_ms = time.ticks_add(now, self._retry_ms)
        self._retry_ms = min(self._retry_ms * 2, MAX_RETRY_MS)

    def _receive(self):
        try:
            n = self._socket().readinto(self._buf)
        except OSError:
            return None
        if not n:
            return None
        return parse(memoryview(self._buf)[:n], self._xid, self.mac)

    def _lease_from(self, yiaddr, opts):
        lease_s = max(MIN_LEASE_S, _u32(opts[OPT_LEASE])) if OPT_LEASE in opts else 3600
        dns = opts.get(OPT_DNS, b"")
        return {
            "address": yiaddr,
            "mask": opts.get(OPT_MASK, b"\xff\xff\xff\x00")[:4],
            "router": opts[OPT_ROUTER][:4] if OPT_ROUTER in opts else None,
            "dns": [dns[i:i + 4] for i in range(0, len(dns) - 3, 4)],
            "server": opts[OPT_SERVER][:4] if OPT_SERVER in opts else None,
            "lease_s": lease_s,
            "t1_s": _u32(opts[OPT_T1]) if OPT_T1 in opts else lease_s // 2,
            "t2_s": _u32(opts[OPT_T2]) if OPT_T2 in opts else lease_s * 7 // 8,
        }

    def _bind(self, lease, now):
        changed = self.lease is None or self.address is None or lease["address"] != self.lease["address"] \
            or lease["mask"] != self.lease["mask"] or lease["router"] != self.lease["router"]
        self.lease = lease
        self._bound_ms = now
        self.state = BOUND
        self._retry_ms = RETRY_MS
        if changed:
            self.iface.deconfigure()
            self.iface.configure(lease["address"], lease["mask"], lease["router"])
            self._write_resolv(lease["dns"])
            self.address = ip_text(lease["address"])
            self.log("dhcp: bound %s/%s router %s dns %s lease %d s from %s" % (
                self.address, ip_text(lease["mask"]), ip_text(lease["router"]) if lease["router"] else "-",
                ",".join(ip_text(d) for d in lease["dns"]) or "-", lease["lease_s"],
                ip_text(lease["server"]) if lease["server"] else "-"))

    def _write_resolv(self, servers):
        try:
            with open("/etc/resolv.conf", "w") as f:
                for s in servers:
                    f.write("nameserver %s\n" % ip_text(s))
        except OSError as e:
            self.log("dhcp: /etc/resolv.conf not written: %s" % e)

    def _drop(self, why):
        self.log("dhcp: address %s dropped: %s" % (self.address, why))
        self.iface.deconfigure()
        self.address = None
        self.state = INIT
        self._retry_ms = RETRY_MS

    def poll(self):
        """Handle what arrived and what is due; returns the address (text) or None."""
        now = time.ticks_ms()
        while True:
            reply = self._receive()
            if reply is None:
                break
            kind, yiaddr, opts = reply
            if kind == OFFER and self.state == SELECTING and OPT_SERVER in opts:
                self._offer = {"address": yiaddr, "server": opts[OPT_SERVER][:4]}
                self.state = REQUESTING
                self._retry_ms = RETRY_MS
                self._next_ms = now
            elif kind == ACK and self.state in (REQUESTING, RENEWING, REBINDING):
                self._bind(self._lease_from(yiaddr, opts), now)
            elif kind == NAK and self.state in (REQUESTING, RENEWING, REBINDING):
                if self.address:
                    self._drop("server said no (NAK)")
                self.lease = None
                self.state = INIT
                self._next_ms = now
        if self.state == BOUND or self.state in (RENEWING, REBINDING):
            held_s = time.ticks_diff(now, self._bound_ms) // 1000
            if held_s >= self.lease["lease_s"]:
                self._drop("lease expired")
                self._next_ms = now
            elif held_s >= self.lease["t2_s"] and self.state != REBINDING:
                self.state, self._retry_ms, self._next_ms = REBINDING, RETRY_MS, now
            elif held_s >= self.lease["t1_s"] and self.state == BOUND:
                self.state, self._retry_ms, self._next_ms = RENEWING, RETRY_MS, now
                self._xid = struct.unpack("<I", os.urandom(4))[0]
        if self.state != BOUND and time.ticks_diff(now, self._next_ms) >= 0:
            self._transmit(now)
        return self.address

    def wait(self, timeout_ms):
        """Poll until bound or timeout_ms passes (at boot, before the firmware starts)."""
        import select
        p = select.poll()
        p.register(self._socket(), select.POLLIN)
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while self.poll() is None and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            p.poll(100)
        return self.address
