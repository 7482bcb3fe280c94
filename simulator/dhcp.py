"""The simulated site's DHCP server (RFC 2131): hands the QEMU appliance its address.

One UDP socket on port 67, bound to the namespace's bridge; replies are broadcast
(the box has no address yet, and asks for broadcast). Leases come from a small pool,
one per MAC address, and are kept in memory (`leases`, `log` for tests).
"""
import ipaddress
import socket
import struct
import threading
import time

SO_BINDTODEVICE = 25
MAGIC_COOKIE = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_REQ_IP, OPT_LEASE, OPT_TYPE, OPT_SERVER = 1, 3, 6, 50, 51, 53, 54
OPT_T1, OPT_T2, OPT_END = 58, 59, 255


def options(data):
    """{code: bytes} of a BOOTP message's DHCP options; ValueError when malformed."""
    if len(data) < 240 or data[236:240] != MAGIC_COOKIE:
        raise ValueError("not a DHCP message")
    out, i = {}, 240
    while i < len(data) and data[i] != OPT_END:
        if data[i] == 0:
            i += 1
            continue
        if i + 1 >= len(data) or i + 2 + data[i + 1] > len(data):
            raise ValueError("option overruns the message")
        out[data[i]] = data[i + 2:i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return out


class Server:
    def __init__(self, interface, server_ip, network, pool, router=None, dns=(), lease_s=3600):
        self.interface = interface
        self.server_ip = ipaddress.IPv4Address(server_ip)
        self.network = ipaddress.IPv4Network(network)
        self.pool = [ipaddress.IPv4Address(a) for a in pool]
        self.router = ipaddress.IPv4Address(router) if router else None
        self.dns = [ipaddress.IPv4Address(d) for d in dns]
        self.lease_s = lease_s
        self.leases = {}          # mac (hex) -> address
        self.log = []             # (message type sent, mac, address)
        self.sock = None
        self.quit = threading.Event()
        self.thread = None

    def open(self):
        """Create the socket (call inside the namespace: netns.Namespace.run_in)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.interface.encode())
        s.bind(("0.0.0.0", 67))
        s.settimeout(0.2)
        self.sock = s
        return self

    def start(self):
        self.thread = threading.Thread(target=self._serve, daemon=True, name="dhcp")
        self.thread.start()
        return self

    def stop(self):
        self.quit.set()
        if self.thread:
            self.thread.join(2)
        if self.sock:
            self.sock.close()

    def address_of(self, mac):
        a = self.leases.get(mac.replace(":", "").lower())
        return str(a) if a else None

    def _serve(self):
        while not self.quit.is_set():
            try:
                data, _ = self.sock.recvfrom(2048)
            except (socket.timeout, OSError):
                continue
            try:
                reply = self.handle(data)
            except ValueError:
                continue    # not a request we understand: a real server ignores it too
            if reply:
                self.sock.sendto(reply, ("255.255.255.255", 68))

    def _allocate(self, mac, wanted):
        if mac in self.leases:
            return self.leases[mac]
        taken = set(self.leases.values())
        if wanted in self.pool and wanted not in taken:
            choice = wanted
        else:
            free = [a for a in self.pool if a not in taken]
            if not free:
                return None
            choice = free[0]
        self.leases[mac] = choice
        return choice

    def handle(self, data):
        """The reply (bytes) to one client message, or None."""
        if len(data) < 240 or data[0] != 1 or data[1] != 1 or data[2] != 6:
            raise ValueError("not an ethernet BOOTREQUEST")
        opts = options(data)
        kind = opts.get(OPT_TYPE, b"\0")[0]
        mac = data[28:34].hex()
        ciaddr = ipaddress.IPv4Address(data[12:16])
        wanted = ipaddress.IPv4Address(opts[OPT_REQ_IP]) if len(opts.get(OPT_REQ_IP, b"")) == 4 else None
        if kind == DISCOVER:
            addr = self._allocate(mac, wanted)
            return self._reply(data, OFFER, addr) if addr else None
        if kind == REQUEST:
            server = opts.get(OPT_SERVER)
            if server is not None and ipaddress.IPv4Address(server[:4]) != self.server_ip:
                return None                      # the client chose another server
            asked = wanted or (ciaddr if int(ciaddr) else None)
            addr = self.leases.get(mac)
            if addr is None and asked in self.pool and asked not in self.leases.values():
                addr = self.leases[mac] = asked
            if addr is None or asked != addr:
                return self._reply(data, NAK, None)
            return self._reply(data, ACK, addr)
        if kind in (RELEASE, DECLINE):
            self.leases.pop(mac, None)
        return None

    def _reply(self, req, kind, addr):
        msg = bytearray(240)
        msg[0:4] = bytes([2, 1, 6, 0])
        msg[4:8] = req[4:8]                      # xid
        struct.pack_into(">H", msg, 10, 0x8000)  # broadcast
        if addr is not None:
            msg[16:20] = addr.packed
        msg[20:24] = self.server_ip.packed
        msg[28:44] = req[28:44]
        msg[236:240] = MAGIC_COOKIE
        opts = bytes([OPT_TYPE, 1, kind, OPT_SERVER, 4]) + self.server_ip.packed
        if kind != NAK:
            opts += bytes([OPT_LEASE, 4]) + struct.pack(">I", self.lease_s)
            opts += bytes([OPT_T1, 4]) + struct.pack(">I", self.lease_s // 2)
            opts += bytes([OPT_T2, 4]) + struct.pack(">I", self.lease_s * 7 // 8)
            opts += bytes([OPT_MASK, 4]) + self.network.netmask.packed
            if self.router:
                opts += bytes([OPT_ROUTER, 4]) + self.router.packed
            if self.dns:
                opts += bytes([OPT_DNS, 4 * len(self.dns)]) + b"".join(d.packed for d in self.dns)
        self.log.append(({OFFER: "offer", ACK: "ack", NAK: "nak"}[kind], req[28:34].hex(),
                         str(addr) if addr else None, time.time()))
        return bytes(msg) + opts + bytes([OPT_END])
