"""The simulated cloud: liberty and rescue, two real HTTPS receivers over one SQLite store.

POST /v1/ingest   body: an envelope (docs/envelope.md) holding a CBOR payload (docs/payload.md)
GET  /v1/boxes    every box: last sequence number, last seen, endpoint, device and upload counts
GET  /v1/devices[?box=B]          the latest full record of every device, JSON
GET  /v1/device?box=B&device=D    one device's latest full record (D: serial, else MAC, else ip:port)
GET  /v1/history?box=B&device=D[&limit=N][&since=T]   a device's full readings, newest first, JSON
Every refused request gets a 4xx with {"reason": ...}, a log line and a row in `rejects`.
"""
import io
import json
import logging
import os
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cbor2

from simulator import cloud_envelope
from simulator.store import CONTROL, Store

log = logging.getLogger("fleetbox.cloud")
MAX_BODY = 1 << 20
SCAN_CODES = ("discovery", "full", "counters", "supplies", "parts", "alerts")   # v2 "s" as an integer
CLOCK_SLACK_S = 2   # a box clock further off than this gets the cloud's time in the reply
STATUS = {"malformed": 400, "bad-padding": 400, "unsupported-version": 400, "bad-payload": 400,
          "unknown-key": 403, "bad-mac": 403, "replay": 409, "out-of-window": 409}


class PayloadError(Exception):
    pass


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def decode_payload(plaintext):
    """The CBOR sequence of docs/payload.md -> (upload header, batch), both in the long form:
    head {"v", "upload"}, batch {"scan", "cycle", "records", "seen", "base"}. Accepts v1 and v2."""
    stream = io.BytesIO(plaintext)
    try:
        dec = cbor2.CBORDecoder(stream)
        head = dec.decode()
        batch = dec.decode()
    except (cbor2.CBORDecodeError, EOFError, ValueError) as e:
        raise PayloadError("not a CBOR upload: %s" % e)
    if stream.read(1):
        raise PayloadError("trailing bytes after the batch")
    if not isinstance(head, dict) or head.get("v") not in (1, 2):
        raise PayloadError("bad upload header %r" % (head,))
    v = head["v"]
    upload = head.get("upload" if v == 1 else "u")
    if not _int(upload) or upload < 0:
        raise PayloadError("bad upload id in header %r" % (head,))
    if not isinstance(batch, dict):
        raise PayloadError("batch is not a map")
    if v == 2:
        kind = batch.get("s")
        if _int(kind):
            if not 0 <= kind < len(SCAN_CODES):
                raise PayloadError("unknown scan code %d" % kind)
            kind = SCAN_CODES[kind]
        batch = {"scan": kind, "cycle": batch.get("c"), "records": batch.get("r", []),
                 "seen": batch.get("k", []), "base": batch.get("b")}
    else:
        batch = dict(batch, seen=[], base=None)
    if not isinstance(batch["records"], list) or not all(isinstance(r, dict) for r in batch["records"]):
        raise PayloadError("batch without a records list")
    if batch["scan"] is not None and not isinstance(batch["scan"], str):
        raise PayloadError("scan is not text")
    for k in ("cycle", "base"):
        if batch[k] is not None and not _int(batch[k]):
            raise PayloadError("%s is not an integer" % k)
    seen = batch["seen"]
    if not isinstance(seen, list) or len(seen) % 2 or not all(_int(x) for x in seen):
        raise PayloadError("seen must be a flat list of (device number, @) integer pairs")
    for r in batch["records"]:
        if not all(isinstance(k, str) for k in r):
            raise PayloadError("record with a non-text key")
        if v == 1:
            if any(k in r for k in CONTROL):
                raise PayloadError("delta record in a version 1 upload")
            continue
        if ("#" in r) == ("=" in r):
            raise PayloadError("a version 2 record has exactly one of \"#\" (full) or \"=\" (delta)")
        if not _int(r.get("#", r.get("="))):
            raise PayloadError("device number is not an integer")
        if "=" in r and (not isinstance(r.get("-", []), list) or not _int(r.get("@", 0))
                         or not (r.get("^") is None or _int(r["^"]))):
            raise PayloadError("delta record with bad \"-\", \"@\" or \"^\"")
        if "#" in r and any(k in r for k in ("-", "@", "^")):
            raise PayloadError("full record with delta fields")
    epoch = head.get("e")
    if epoch is not None and not (_int(epoch) and 0 < epoch < 65536):
        raise PayloadError("bad spool epoch in header %r" % (head,))
    return {"v": v, "upload": upload, "epoch": epoch}, batch


def manifest_keys(path):
    """Key lookup over fbtool's manufacturing manifest {serial: {kid: key hex}}, re-read when it changes."""
    cache = {"mtime": None, "data": {}}

    def keys(device_id, kid):
        try:
            m = os.path.getmtime(path)
            if m != cache["mtime"]:
                with open(path) as f:
                    cache["data"] = json.load(f)
                cache["mtime"] = m
        except (OSError, ValueError):
            return None
        k = cache["data"].get(device_id, {}).get(str(kid))
        return bytes.fromhex(k) if k else None

    return keys


class _Handler(BaseHTTPRequestHandler):
    server_version = "fleetbox-cloud/1"
    protocol_version = "HTTP/1.1"   # keep-alive: one TLS session serves a box's whole drain
    timeout = 300                   # an idle kept-alive connection is closed after this

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.server.name, fmt % args)

    def setup(self):
        super().setup()
        self.server.conns.add(self.connection)

    def finish(self):
        self.server.conns.discard(self.connection)
        super().finish()

    def _reply(self, status, obj, content_type=True):
        # Few header bytes: they travel on every upload (no Server, Date or, for ingest, Content-Type).
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response_only(status)
        if content_type:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.log_request(status, len(body))

    def _refuse(self, reason, detail, **extra):
        log.warning("%s refused an upload from %s: %s (%s)", self.server.name, self.client_address[0], reason, detail)
        self.server.store.reject(self.server.name, reason, detail)
        self._reply(STATUS.get(reason, 400), dict({"ok": False, "reason": reason}, **extra), False)

    def do_POST(self):
        try:
            self._ingest()
        except Exception as e:   # a bug must cost one request, never the receiver
            log.exception("%s failed on an upload from %s", self.server.name, self.client_address[0])
            self.close_connection = True
            try:
                self._reply(500, {"ok": False, "reason": "internal", "detail": type(e).__name__}, False)
            except OSError:
                pass

    def _ingest(self):
        if urllib.parse.urlsplit(self.path).path != "/v1/ingest":
            return self._reply(404, {"ok": False, "reason": "not-found"})
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            return self._refuse("malformed", "no Content-Length")
        if not 0 < length <= MAX_BODY:
            self.close_connection = True
            return self._refuse("malformed", "body of %d bytes" % length)
        data = self.rfile.read(length)
        if len(data) < length:
            self.close_connection = True
            return self._refuse("malformed", "body cut short (%d of %d bytes)" % (len(data), length))
        srv = self.server
        try:
            header, plaintext = srv.opener.open(data)
        except cloud_envelope.CloudEnvelopeError as e:
            if e.duplicate:
                log.info("%s acknowledged a copy of the last envelope from %s", srv.name, e.header["device_id"])
                return self._reply(200, {"ok": True, "duplicate": True}, False)
            if e.reason == "replay":
                # Only a holder of the box's key gets this far (the MAC was checked): tell it where
                # its sequence numbers must continue, so a box whose flash was erased recovers.
                return self._refuse(e.reason, str(e), last_seq=srv.store.last_seq(e.header["device_id"]))
            return self._refuse(e.reason, str(e))
        try:
            head, batch = decode_payload(plaintext)
        except PayloadError as e:
            return self._refuse("bad-payload", str(e))
        fresh, resync = srv.store.store_upload(header["device_id"], header["seq"], head["upload"], batch,
                                               srv.name, len(data), head["epoch"])
        n = len(batch["records"]) + len(batch["seen"])
        log.info("%s stored upload %d from %s: %d records%s%s", srv.name, head["upload"], header["device_id"], n,
                 "" if fresh else " (already stored)", " resync %s" % resync if resync else "")
        now = int(time.time())
        if head["v"] >= 2 and fresh and not resync and abs(header["ts"] - now) <= CLOCK_SLACK_S:
            return self._no_news()
        reply = {"ok": True, "upload": head["upload"], "time": now}
        if not fresh:
            reply["duplicate"] = True
        if resync:
            reply["resync"] = resync
        self._reply(200, reply, False)

    def _no_news(self):
        """Stored, and nothing to tell the box (its clock is right, no resync): the smallest answer."""
        self.send_response_only(204)
        self.end_headers()
        self.log_request(204, 0)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        store = self.server.store
        try:
            limit = int(q.get("limit", 100))
            since = int(q["since"]) if "since" in q else None
        except ValueError:
            return self._reply(400, {"ok": False, "reason": "limit and since must be integers"})
        if url.path == "/v1/boxes":
            return self._reply(200, store.boxes())
        if url.path == "/v1/devices":
            return self._reply(200, store.devices(q.get("box")))
        if url.path == "/v1/device" and "box" in q and "device" in q:
            rec = store.device(q["box"], q["device"])
            return self._reply(200, rec) if rec is not None else self._reply(404, {"ok": False, "reason": "no such device"})
        if url.path == "/v1/history" and "box" in q and "device" in q:
            return self._reply(200, store.history(q["box"], q["device"], max(1, min(limit, 1000)), since))
        self._reply(404, {"ok": False, "reason": "not-found"})


class Receiver:
    """One HTTPS endpoint (liberty or rescue) in a background thread."""

    def __init__(self, name, address, port, cert, key, store, keys, window=86400):
        self.name, self.address, self.port = name, address, port
        self.cert, self.key = cert, key
        self.store, self.keys, self.window = store, keys, window
        self.httpd = None
        self.thread = None

    def start(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        httpd = ThreadingHTTPServer((self.address, self.port), _Handler, bind_and_activate=False)
        httpd.allow_reuse_address = True
        httpd.daemon_threads = True
        httpd.server_bind()
        self.port = httpd.server_address[1]   # port 0 picks a free one, kept across restarts
        httpd.server_activate()
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        httpd.name = self.name
        httpd.conns = set()   # kept-alive connections, cut when the receiver stops
        httpd.store = self.store
        httpd.opener = cloud_envelope.Opener(self.keys, self.store, self.window)
        self.httpd = httpd
        self.thread = threading.Thread(target=httpd.serve_forever, name=self.name, daemon=True)
        self.thread.start()
        log.info("%s listening on https://%s:%d", self.name, self.address, self.port)
        return self

    @property
    def running(self):
        return self.httpd is not None

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            for conn in list(self.httpd.conns):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.httpd = None


class Cloud:
    """liberty + rescue over one store, as the simulator runs them."""

    def __init__(self, state_dir, store_path, manifest_path, endpoints, ca, window=86400):
        from simulator import pki
        self.store = Store(store_path)
        keys = manifest_keys(manifest_path)
        self.receivers = {}
        for name, (address, port) in endpoints.items():
            hostname = "%s.fleetbox.test" % name
            cert, key = pki.ensure_server(state_dir, name, hostname, [address], ca)
            self.receivers[name] = Receiver(name, address, port, cert, key, self.store, keys, window)

    def start(self):
        for r in self.receivers.values():
            r.start()
        return self

    def stop(self):
        for r in self.receivers.values():
            r.stop()

    def box_config(self, name):
        r = self.receivers[name]
        return {"name": name, "url": "https://%s.fleetbox.test:%d/v1/ingest" % (name, r.port), "resolve": r.address}
