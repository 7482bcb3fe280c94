"""A private network for the QEMU appliance: a network namespace with a bridge and a tap device.

Everything lives inside a namespace `fbx-<random>` that this module creates and always
deletes: the bridge `br0` holds 192.0.2.1/24 (TEST-NET-1, an address range that exists
nowhere else) and any further service addresses; QEMU's tap device `tap0` is enslaved
to it. Nothing touches the host's own interfaces. Services of this (host) process
listen inside the namespace: `run_in(fn)` runs fn on a thread that has joined the
namespace, so the sockets fn creates belong to it and any thread may then use them.
"""
import ctypes
import os
import secrets
import select
import socket
import subprocess
import threading

CLONE_NEWNET = 0x40000000
NETWORK = "192.0.2.0/24"
ROUTER = "192.0.2.1"
BRIDGE = "br0"
TAP = "tap0"


class NetnsError(Exception):
    pass


def available():
    """None when namespaces, tap devices and QEMU can be used here, else the reason why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if r.returncode != 0:
        return "ip netns unavailable: %s" % r.stderr.strip()
    return None


def _ip(*args, ns=None):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["ip"] + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise NetnsError("%s: %s" % (" ".join(cmd), r.stderr.strip()))
    return r.stdout


class Namespace:
    def __init__(self, name=None):
        self.name = name or "fbx-" + secrets.token_hex(4)
        self.addresses = [ROUTER]
        self.created = False

    def create(self):
        _ip("netns", "add", self.name)
        self.created = True
        try:
            for args in (("link", "set", "lo", "up"),
                         ("link", "add", BRIDGE, "type", "bridge"),
                         ("addr", "add", ROUTER + "/24", "dev", BRIDGE),
                         ("tuntap", "add", "dev", TAP, "mode", "tap"),
                         ("link", "set", TAP, "master", BRIDGE),
                         ("link", "set", TAP, "up"),
                         ("link", "set", BRIDGE, "up")):
                _ip(*args, ns=self.name)
        except Exception:
            self.delete()
            raise
        return self

    def add_address(self, address):
        """Another address on the bridge (a cloud endpoint, a printer's relay)."""
        if address not in self.addresses:
            _ip("addr", "add", address + "/32", "dev", BRIDGE, ns=self.name)
            self.addresses.append(address)

    def exec_prefix(self):
        """The command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def run_in(self, fn, *args):
        """fn(*args) on a thread inside the namespace; returns its result (or raises its error)."""
        out = {}

        def target():
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open("/var/run/netns/" + self.name, os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise NetnsError("setns %s: errno %d" % (self.name, ctypes.get_errno()))
                finally:
                    os.close(fd)
                out["value"] = fn(*args)
            except BaseException as e:  # noqa: BLE001  (handed to the caller)
                out["error"] = e
        t = threading.Thread(target=target, name="netns-" + self.name)
        t.start()
        t.join()
        if "error" in out:
            raise out["error"]
        return out.get("value")

    def delete(self):
        if self.created:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
            self.created = False

    def __enter__(self):
        return self.create()

    def __exit__(self, *exc):
        self.delete()


class UdpRelay:
    """Datagrams to (address, port) inside the namespace go to a host-side target and back.

    The box reaches a site device that listens on the host's loopback through its
    relay address on the bridge; each box-side sender gets its own host-side socket,
    so replies find their way back.
    """

    def __init__(self, ns, address, port, target):
        self.target = target
        self.inside = ns.run_in(self._bind, address, port)
        self.peers = {}           # box address -> host-side socket
        self.quit = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="relay-%s:%d" % (address, port))
        self.thread.start()

    @staticmethod
    def _bind(address, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((address, port))
        return s

    def _run(self):
        while not self.quit.is_set():
            socks = [self.inside] + list(self.peers.values())
            ready, _, _ = select.select(socks, [], [], 0.2)
            for s in ready:
                try:
                    data, addr = s.recvfrom(65535)
                except OSError:
                    continue
                if s is self.inside:
                    peer = self.peers.get(addr)
                    if peer is None:
                        if len(self.peers) > 64:
                            for old in self.peers.values():
                                old.close()
                            self.peers.clear()
                        peer = self.peers[addr] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        peer.connect(self.target)
                    try:
                        peer.send(data)
                    except OSError:
                        pass
                else:
                    for box, peer in list(self.peers.items()):
                        if peer is s:
                            self.inside.sendto(data, box)

    def stop(self):
        self.quit.set()
        self.thread.join(2)
        self.inside.close()
        for s in self.peers.values():
            s.close()


class TcpRelay:
    """Connections to (address, port) inside the namespace are spliced to a host-side target."""

    def __init__(self, ns, address, port, target):
        self.target = target
        self.inside = ns.run_in(self._listen, address, port)
        self.quit = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True, name="relay-tcp-%s:%d" % (address, port))
        self.thread.start()

    @staticmethod
    def _listen(address, port):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        s.listen(16)
        s.settimeout(0.2)
        return s

    def _accept(self):
        while not self.quit.is_set():
            try:
                conn, _ = self.inside.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._splice, args=(conn,), daemon=True).start()

    def _splice(self, conn):
        try:
            up = socket.create_connection(self.target, timeout=5)
        except OSError:
            conn.close()
            return
        pair = {conn: up, up: conn}
        try:
            while not self.quit.is_set():
                ready, _, _ = select.select(list(pair), [], [], 0.5)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    pair[s].sendall(data)
        except OSError:
            pass
        finally:
            conn.close()
            up.close()

    def stop(self):
        self.quit.set()
        self.thread.join(2)
        self.inside.close()
