"""Real peers for uplink tests and bench/uplink: a PKI, the cloud (liberty + rescue), a box
identity and config, an HTTP CONNECT proxy, a byte-counting TCP relay and impostor servers.

Everything listens on 127.0.0.0/8 only and stops with its owner.
"""
import base64
import json
import os
import secrets
import socket
import ssl
import threading

from simulator import pki
from cloud.server import Cloud

SERIAL = "FBX-UPLINK1"


class Kit:
    """CA + identity + cloud over one store (database: a URL, default a SQLite file in directory);
    `cfg(...)` is a checked box config pointing at it."""

    def __init__(self, directory, liberty, rescue, serial=SERIAL, database=None, limits=None):
        self.dir = directory
        self.serial = serial
        self.ca = pki.ensure_ca(directory)
        key = secrets.token_bytes(32)
        self.identity = {"serial": serial, "kid": 1, "device_key": key.hex()}
        self.manifest = os.path.join(directory, "manifest.json")
        with open(self.manifest, "w") as f:
            json.dump({serial: {"1": key.hex()}}, f)
        self.cloud = Cloud(directory, database or os.path.join(directory, "cloud.sqlite"), self.manifest,
                           {"liberty": liberty, "rescue": rescue}, self.ca, limits=limits)
        self.store = self.cloud.store

    def add_identity(self, serial):
        """Another box known to the cloud: its factory identity."""
        key = secrets.token_bytes(32)
        with open(self.manifest) as f:
            m = json.load(f)
        m[serial] = {"1": key.hex()}
        with open(self.manifest + ".tmp", "w") as f:
            json.dump(m, f)
        os.replace(self.manifest + ".tmp", self.manifest)
        return {"serial": serial, "kid": 1, "device_key": key.hex()}

    def start(self):
        self.cloud.start()
        return self

    def answer(self, reply, identity=None):
        """What an ingest reply says: the fields of a sealed answer (docs/downlink.md) without its
        binding (`re`, `time`), with "sealed": True; a plain JSON refusal as it is; None if empty."""
        if not reply:
            return None
        if reply[:3] != b"FBE":
            return json.loads(reply)
        from cloud import downlink
        ident = identity or self.identity
        _, fields = downlink.open_answer((ident["kid"], bytes.fromhex(ident["device_key"])), ident["serial"], reply)
        fields.pop("re", None)
        fields.pop("time", None)
        return dict(fields, sealed=True)

    def stop(self):
        self.cloud.stop()

    def pins(self, names=("liberty", "rescue")):
        return [pki.spki_pin(os.path.join(self.dir, n + ".pem")) for n in names]

    def through_proxy(self, address, user="box", password="s3cret"):
        """A CONNECT proxy on address that may tunnel to liberty only, and a box config (liberty
        only, no `resolve`: the proxy resolves names, not the box) that goes through it.
        Returns (proxy, cfg, the tunnel target "host:port"); the caller stops the proxy."""
        lib = self.cloud.receivers["liberty"]
        target = "liberty.fleetbox.test:%d" % lib.port
        proxy = ConnectProxy(address, user, password, allowed={target: (lib.address, lib.port)})
        cfg = self.raw_cfg(endpoints=("liberty",), proxy={"url": "http://%s:%d" % (proxy.address, proxy.port),
                                                          "user": user, "password": password})
        for ep in cfg["endpoints"]:
            ep.pop("resolve")
        return proxy, cfg, target

    def raw_cfg(self, endpoints=("liberty", "rescue"), resolve=None, pins=None, **extra):
        eps = []
        for n in endpoints:
            ep = self.cloud.box_config(n)
            if resolve and n in resolve:
                ep["resolve"], port = resolve[n]
                ep["url"] = "https://%s.fleetbox.test:%d/v1/ingest" % (n, port)
            eps.append(ep)
        cfg = {"endpoints": eps, "ca": base64.b64encode(pki.der(self.ca[1])).decode(),
               "pins": self.pins() if pins is None else pins, "http_timeout_s": 5, "backoff_s": [1, 2]}
        cfg.update(extra)
        return cfg

    def cfg(self, *a, **kw):
        from fleetbox import config
        return config.check(self.raw_cfg(*a, **kw))


def _pipe(src, dst, count, key):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            count[key] += len(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Listener:
    def __init__(self, address):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.address, self.port = self.sock.getsockname()
        self.threads = []
        self.running = True
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def _accept(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self.handle, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self):
        self.running = False
        self.sock.close()


class Relay(_Listener):
    """TCP relay to target that counts payload bytes each way (TLS included): `up`, `down`, `connections`."""

    def __init__(self, address, target):
        self.target = target
        self.count = {"up": 0, "down": 0, "connections": 0}
        super().__init__(address)

    def handle(self, conn):
        self.count["connections"] += 1
        up = socket.create_connection(self.target)
        t = threading.Thread(target=_pipe, args=(conn, up, self.count, "up"), daemon=True)
        t.start()
        _pipe(up, conn, self.count, "down")
        t.join(5)

    def reset(self):
        self.count.update(up=0, down=0, connections=0)

    @property
    def total(self):
        return self.count["up"] + self.count["down"]


class ConnectProxy(_Listener):
    """A small HTTP proxy that only tunnels (CONNECT), with optional basic auth; logs what it tunnelled."""

    def __init__(self, address, user=None, password=None, allowed=None):
        self.auth = (None if user is None
                     else "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode())
        self.allowed = allowed        # {"host:port": (address, port)}: where CONNECT may go
        self.tunnels = []
        self.refused = []
        super().__init__(address)

    def handle(self, conn):
        f = conn.makefile("rb")
        request = f.readline().decode("latin-1").split()
        headers = {}
        while True:
            line = f.readline().decode("latin-1")
            if line in ("\r\n", "\n", ""):
                break
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if len(request) < 3 or request[0] != "CONNECT":
            self.refused.append(("method", request))
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return conn.close()
        if self.auth and headers.get("proxy-authorization") != self.auth:
            self.refused.append(("auth", request[1]))
            conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\n"
                         b"Content-Length: 0\r\n\r\n")
            return conn.close()
        host, _, port = request[1].rpartition(":")
        target = (host, int(port))
        if self.allowed is not None:
            target = self.allowed.get(request[1])
            if target is None:
                self.refused.append(("target", request[1]))
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return conn.close()
        up = socket.create_connection(target)
        self.tunnels.append(request[1])
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        count = {"up": 0, "down": 0}
        t = threading.Thread(target=_pipe, args=(conn, up, count, "up"), daemon=True)
        t.start()
        _pipe(up, conn, count, "down")


class Impostor(_Listener):
    """A TLS server with its own certificate that records whatever a client sends after the handshake."""

    def __init__(self, address, cert_path, key_path):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert_path, key_path)
        self.received = []
        self.handshakes = 0
        super().__init__(address)

    def handle(self, conn):
        try:
            s = self.ctx.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            return conn.close()
        self.handshakes += 1
        try:
            s.settimeout(3)
            data = s.recv(65536)
            if data:
                self.received.append(data)
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
        except (OSError, ssl.SSLError):
            pass
        finally:
            s.close()
