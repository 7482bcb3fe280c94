"""Real peers for the updater's tests and bench/update: signed format-1 images of any size,
an HTTPS server that serves them with Range (127.0.0.0/8 only), and the MicroPython run
of fleetbox.updater against it (tests/mp/updater_install.py)."""
import hashlib
import json
import os
import re
import ssl
import struct
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VECTORS = os.path.join(ROOT, "docs", "vectors", "update")
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
SCRIPT = os.path.join(ROOT, "tests", "mp", "updater_install.py")
CREATED = 1796000000
EXPIRES = 4102444800
BOX_MODULES = ("errors", "port", "rsapss", "keywrap", "updroot", "updimage", "atomicfile", "https", "updater")


def identity():
    with open(os.path.join(VECTORS, "expected.json")) as f:
        return json.load(f)["identity"]


def fbi(size, version="2.0.0", board="sim", files=8, seed=1):
    """A format-1 image of about size bytes in `files` files (pseudo-random, fixed by seed)."""
    per = max(1, size // files)
    blobs = [("fleetbox/m%02d.mpy" % i, hashlib.shake_256(b"%d/%d" % (seed, i)).digest(per)) for i in range(files)]
    manifest = {"format": 1, "kind": "app", "board": board, "version": version, "created": CREATED,
                "files": [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in blobs]}
    mbytes = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    body = struct.pack("<4sHHI", b"FBIM", 1, 0, len(mbytes)) + mbytes + b"".join(d for _, d in blobs)
    return body + hashlib.sha256(body).digest()


def signed(payload, signers=("k2.pem", "k3.pem"), chunk_size=4096, **manifest):
    """(image bytes, wrap bytes for identity()) of payload, signed by vector keys."""
    from fbtool import keys, updimage
    ks = [keys.load_private(os.path.join(VECTORS, n)) for n in signers]
    opts = dict(security_counter=3, min_loader=1, expires=EXPIRES, created=CREATED)
    opts.update(manifest)
    data, key = updimage.sign(payload, ks, chunk_size=chunk_size, **opts)
    ident = identity()
    wrap = updimage.make_wrap(updimage.Image(data), key, ident["serial"], ident["kid"],
                              bytes.fromhex(ident["device_key"]))
    return data, wrap


def bytecode(out, modules=BOX_MODULES):
    """The box's modules as mpy-cross bytecode under `out` (loading source costs heap): those
    named, or every module of the package when `modules` is None (a heap figure as a board has it)."""
    from fbtool.image import compile_mpy
    os.makedirs(os.path.join(out, "fleetbox"), exist_ok=True)
    if modules is None:
        modules = sorted(n[:-3] for n in os.listdir(os.path.join(ROOT, "firmware", "fleetbox")) if n.endswith(".py"))
    else:
        with open(os.path.join(out, "fleetbox", "__init__.py"), "w"):
            pass
    for name in modules:
        arc = "fleetbox/%s.py" % name
        with open(os.path.join(out, arc[:-3] + ".mpy"), "wb") as f:
            f.write(compile_mpy(os.path.join(ROOT, "firmware", arc), arc))
    return out


class RangeServer:
    """HTTPS on 127.0.0.1: GET /images/<name> with Range, from a dict of bytes; counts requests."""

    def __init__(self, directory, images, address="127.0.0.1"):
        from simulator import pki
        ca = pki.ensure_ca(directory)
        cert, key = pki.ensure_server(directory, "updates", "updates.fleetbox.test", [address], ca)
        self.ca_der = pki.der(ca[1])
        self.pin = pki.spki_pin(cert)       # the box trusts the pin (docs/uplink.md)
        self.images = images
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.requests += 1
                data = owner.images.get(self.path.rsplit("/", 1)[-1])
                if data is None:
                    return self._send(404, b"")
                m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
                if not m:
                    return self._send(200, data)
                a, b = int(m.group(1)), min(int(m.group(2)), len(data) - 1)
                if a >= len(data):
                    return self._send(416, b"")
                self._send(206, data[a:b + 1], {"Content-Range": "bytes %d-%d/%d" % (a, b, len(data))})

            def _send(self, status, body, headers=None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer((address, 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = "https://updates.fleetbox.test:%d" % self.port
        self.address = address
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def run_box(tmp, server, name, wrap, mode, heap, slot_kib=1024, extra=()):
    """tests/mp/updater_install.py on MicroPython against server's image name."""
    paths = {}
    for key, blob in (("wrap", wrap), ("ca", server.ca_der), ("identity", json.dumps(identity()).encode())):
        paths[key] = os.path.join(tmp, key)
        with open(paths[key], "wb") as f:
            f.write(blob)
    mods = os.path.join(tmp, "mpy")
    if not os.path.isdir(mods):
        bytecode(mods)
    args = [MICROPYTHON, "-X", "heapsize=%d" % heap, SCRIPT, mods, "%s/images/%s" % (server.url, name),
            server.address, paths["ca"], server.pin, os.path.join(VECTORS, "root-1.fbr"), paths["wrap"],
            paths["identity"],
            os.path.join(tmp, "slot.img"), str(slot_kib), os.path.join(tmp, "state"), mode] + list(extra)
    os.makedirs(os.path.join(tmp, "state"), exist_ok=True)
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def base_heap(tmp, server, name, wrap, slot_kib=1024):
    r = run_box(tmp, server, name, wrap, "probe", 4 << 20, slot_kib)
    assert r.returncode == 0, r.stdout + r.stderr
    return int(r.stdout.split("base ")[1].split()[0])
