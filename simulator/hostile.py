"""A hostile cloud: a TLS server with an endpoint's own certificate and key (so the box's CA and
pins accept it) that answers each upload the way `mode` says. The uplink tests use it directly,
the simulator's `hostile` fault puts it in front of liberty or rescue.

    hostile = HostileCloud(kit, "127.77.60.1")
    cfg = kit.raw_cfg(endpoints=("liberty",), resolve={"liberty": (hostile.address, hostile.port)})
    hostile.mode = "huge-header"

`kit` offers dir (NAME.pem, NAME.key, ca.pem), cloud.receivers, identity and store. In mode
"good" it relays the request to the real endpoint of `kit` and the answer back (and records the
answer); "rotate" plays the next crafted mode on each request; every other mode is one of MODES.
Listens on 127.0.0.0/8 only; stop() it.
"""
import os
import secrets
import socket
import ssl
import struct
import threading
import time

import cbor2

from cloud import downlink, envelope

MODES = (
    "good",              # relay to the real cloud
    "huge-header",       # a 300 KB header line
    "endless-headers",   # header lines until the box hangs up
    "negative-length",   # Content-Length: -5
    "huge-length",       # Content-Length: 99999999999
    "length-mismatch",   # two Content-Length headers
    "slow-drip",         # a byte of the head every 300 ms
    "reset-mid-body",    # half the body, then a TCP reset
    "plain-200",         # an unsealed {"ok": true} with a Date header and a "time"
    "plain-max-seq",     # the unsealed 409 of issue 14: last_seq 2**64-1
    "forged",            # a sealed answer under a key that is not the box's (bad MAC)
    "wrong-types",       # sealed by the box's key, "resync": "abc"
    "max-seq",           # sealed 409 replay with last_seq 2**64-1
    "far-seq",           # sealed 409 replay with last_seq 2**62 (in range, not believable)
    "replayed",          # relays, but answers with a genuine earlier answer
    "held-back",         # relays, answers nothing; next time answers with that held-back answer
)
CRAFTED = MODES[1:]


def _read_message(s):
    """(head, body) of one HTTP message on s (a request or an answer; its length from
    Content-Length), or None when the peer closed before it was whole."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            return None
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head, body


def _response(status, body, extra=b""):
    return b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n%s\r\n" % (status, len(body), extra) + body


class HostileCloud:
    def __init__(self, kit, address, mode="good", port=0, endpoint="liberty"):
        self.kit = kit
        self.mode = mode
        self.endpoint = endpoint
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(os.path.join(kit.dir, endpoint + ".pem"), os.path.join(kit.dir, endpoint + ".key"))
        self.client_ctx = ssl.create_default_context(cafile=os.path.join(kit.dir, "ca.pem"))
        self.answers = []        # genuine answers relayed, oldest first
        self.held = None
        self.requests = []       # (mode, envelope seq) per request
        self._turn = 0           # the next of CRAFTED in mode "rotate"
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(16)
        self.address, self.port = self.sock.getsockname()
        self.running = True
        threading.Thread(target=self._accept, name="hostile-" + endpoint, daemon=True).start()

    def _accept(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def stop(self):
        """Stop taking connections (those open end by themselves: every mode is bounded in time)."""
        self.running = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes accept(): until then the port stays taken
        except OSError:
            pass
        self.sock.close()

    def next_mode(self):
        if self.mode != "rotate":
            return self.mode
        mode = CRAFTED[self._turn % len(CRAFTED)]
        self._turn += 1
        return mode

    # -- the real cloud behind
    def relay(self, raw):
        real = self.kit.cloud.receivers[self.endpoint]
        with socket.create_connection((real.address, real.port), timeout=10) as tcp:
            with self.client_ctx.wrap_socket(tcp, server_hostname=self.endpoint + ".fleetbox.test") as s:
                s.sendall(raw.replace(b"Connection: close\r\n", b"") if raw else raw)
                msg = _read_message(s)
                if msg is None:
                    raise OSError("cloud closed")
                return int(msg[0].split()[1]), msg[1]

    def sealed(self, fields, seq, key=None):
        """A sealed answer bound to the request `seq`, under the box's next down seq; no check of
        the fields (cloud.downlink would refuse the wrong types this kit must send)."""
        ident = self.kit.identity
        key = key or bytes.fromhex(ident["device_key"])
        plaintext = cbor2.dumps(dict(fields, re=seq, time=int(time.time())), canonical=True)
        down = self.kit.store.next_down_seq(ident["serial"])
        return envelope.seal(key, ident["kid"], ident["serial"], down, int(time.time()), plaintext,
                             downlink.CT_ANSWER, direction=envelope.DOWN)

    def handle(self, conn):
        try:
            s = self.ctx.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            return conn.close()
        try:
            s.settimeout(30)
            while True:
                msg = _read_message(s)
                if msg is None:
                    break
                head, body = msg
                raw = head + b"\r\n\r\n" + body
                seq = envelope.parse_header(body)["seq"] if body[:3] == b"FBE" else None
                mode = self.next_mode()
                self.requests.append((mode, seq))
                if not self.answer(s, mode, raw, seq):
                    break
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def answer(self, s, mode, raw, seq):
        """Send mode's answer; False when the connection must end."""
        if mode == "good":
            status, reply = self.relay(raw)
            self.answers.append(reply)
            s.sendall(_response(status, reply))
        elif mode == "huge-header":
            s.sendall(b"HTTP/1.1 200 OK\r\nX-Junk: " + b"a" * (300 * 1024) + b"\r\ncontent-length: 0\r\n\r\n")
        elif mode == "endless-headers":
            deadline = time.time() + 20
            while time.time() < deadline:
                s.sendall(b"X-More: yes\r\n" * 64)
                time.sleep(0.01)
            return False
        elif mode == "negative-length":
            s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: -5\r\n\r\n" + self.sealed({"ok": True}, seq))
        elif mode == "huge-length":
            s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n{\"ok\":true}")
        elif mode == "length-mismatch":
            s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 11\r\n\r\n{\"ok\":true}")
        elif mode == "slow-drip":
            for b in b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"ok\":true}":
                s.sendall(bytes((b,)))
                time.sleep(0.3)
        elif mode == "reset-mid-body":
            reply = self.sealed({"ok": True}, seq)
            s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(reply) + reply[:len(reply) // 2])
            time.sleep(0.05)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        elif mode == "plain-200":
            s.sendall(_response(200, b'{"ok":true,"time":946684800,"duplicate":true}',
                                b"Date: Sat, 01 Jan 2000 00:00:00 GMT\r\n"))
        elif mode == "plain-max-seq":
            s.sendall(_response(409, b'{"ok":false,"reason":"replay","last_seq":18446744073709551615}'))
        elif mode == "forged":
            s.sendall(_response(200, self.sealed({"ok": True}, seq, key=secrets.token_bytes(32))))
        elif mode == "wrong-types":
            s.sendall(_response(200, self.sealed({"ok": True, "resync": "abc"}, seq)))
        elif mode == "max-seq":
            s.sendall(_response(409, self.sealed({"ok": False, "reason": "replay", "last_seq": 2 ** 64 - 1}, seq)))
        elif mode == "far-seq":
            s.sendall(_response(409, self.sealed({"ok": False, "reason": "replay", "last_seq": 2 ** 62}, seq)))
        elif mode == "replayed":
            status, reply = self.relay(raw)
            if not self.answers:            # nothing genuine to replay yet: keep this one for later
                self.answers.append(reply)
                return False
            s.sendall(_response(200, self.answers[-1]))
        elif mode == "held-back":
            status, reply = self.relay(raw)
            if self.held is None:
                self.held = reply
                return False
            s.sendall(_response(200, self.held))
        else:
            raise ValueError("unknown mode %r" % mode)
        return True
