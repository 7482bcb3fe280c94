"""Counters that only show on a printer's web page (docs/profiles.md "Web pages").

The firmware's collector, on MicroPython via `fbtool scan --json`, against the simulator's
web-only printers (HTTPS with a self-signed certificate behind a redirect, chunked HTTP);
then fleetbox.web.fetch against hostile pages, on CPython and on MicroPython.
"""
import asyncio
import json
import os
import socketserver
import subprocess
import sys
import threading
import time

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "firmware"))
from fleetbox import web  # noqa: E402

from simulator.site import Site  # noqa: E402
from simulator.webpages import BROTHER_PATH, RICOH_PATH  # noqa: E402

SNMP_PORT = 17561
HTTP_PORT = 17581
HTTPS_PORT = 17582
HOSTILE_PORT = 17583
HOSTILE_AT_PRINTER = 17584     # a hostile page at the Brother printer's own address
NET = "127.31.12."
HOSTILE = NET + "50"
FBTOOL = os.path.join(os.path.dirname(sys.executable), "fbtool")
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")


@pytest.fixture(scope="module")
def site():
    with open(os.path.join(ROOT, "simulator", "site.yaml")) as f:
        data = yaml.safe_load(f)
    data["devices"] = [d for d in data["devices"] if d.get("web")]
    assert len(data["devices"]) == 4
    for i, d in enumerate(data["devices"]):
        d["address"] = NET + str(16 + i)
    data["network"] = NET + "0/24"
    with Site.from_dict(data, port_override=SNMP_PORT, web_ports={80: HTTP_PORT, 443: HTTPS_PORT}) as s:
        yield s


def test_collector_reads_totals_from_the_web_page(site):
    before = {t["ip"]: t["total"] for t in site.truth()}
    r = subprocess.run([FBTOOL, "scan", "--json", "--port", str(SNMP_PORT), "--web-port", "80=%d" % HTTP_PORT,
                        "--web-port", "443=%d" % HTTPS_PORT, NET + "16-" + NET + "19"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    recs = {rec["ip"]: rec for rec in json.loads(r.stdout)}
    truth = {t["ip"]: t for t in site.truth()}
    assert set(recs) == set(truth)
    styles = set()
    for ip, t in truth.items():
        rec = recs[ip]
        d = site.device(t["name"])
        styles.add(d.web.style)
        assert t["total_source"] == "web"
        assert rec["sources"]["counters.total"] == t["web_source"]
        # exactly what the page showed when the box read it (the agent has no prtMarkerLifeCount)
        assert rec["counters"]["total"] in d.web.served, (ip, rec["counters"]["total"], d.web.served)
        assert before[ip] <= rec["counters"]["total"] <= t["total"]
        assert rec["serial"] == t["serial"]
        if t["serial_source"] == "web":       # the Brother's and Kyocera's agents have no serial either
            assert rec["sources"]["serial"] == t["web_serial_source"]
        else:
            assert rec["sources"]["serial"] == "prtGeneralSerialNumber"
        if d.web.style == "kyocera-ccrx":
            # CCRX shows printed pages by function over HTTPS; the profile's total is their sum
            assert rec["sources"]["counters.total"].startswith("web:https:/js/jssrc/model/")
            parts = [rec["counters"][k] for k in ("print", "copy", "fax")]
            assert sum(parts) == rec["counters"]["total"] and min(parts) > 0, rec["counters"]
            assert all(rec["sources"]["counters." + k] == t["web_source"] for k in ("print", "copy", "fax"))
            assert rec["typology"] == "mfp"
            # SNMP has no firmware OID here: the configuration page's system firmware
            assert rec["firmware"] == "2R7_2000.003.205" and rec["sources"]["firmware"] == t["web_serial_source"]
        if d.web.style == "ricoh-wim":
            # only the machine total is read: the page's Copier/Printer rows are colour parts
            assert rec["sources"]["counters.total"] == "web:http:" + RICOH_PATH
            assert not any(k in rec["counters"] for k in ("print", "copy", "fax"))
    assert styles == {"hp-ews", "brother", "kyocera-ccrx", "ricoh-wim"}
    assert sum(t["serial_source"] == "web" for t in truth.values()) == 2
    # fields SNMP gave are never read from the page (the Brother page also shows firmware "ZC")
    bro = [rec for ip, rec in recs.items() if site.device(truth[ip]["name"]).web.style == "brother"][0]
    assert bro["firmware"] == "1.05" and bro["sources"]["firmware"] == "profile Brother: sysDescr"


def test_a_counter_the_page_never_gave_does_not_send_the_box_back(site, tmp_path):
    """A by-function counter missing from SNMP (a printer-only model has no copy counter)
    sends the box to the page once; if the page has none either, later scans skip it."""
    from fbtool import profiles as compiler
    from fleetbox import collector, devstate, profiles, snmp

    path = tmp_path / "profiles.json"
    lines = compiler.compile_to(str(path)).decode().splitlines()
    for i, line in enumerate(lines[1:], 1):
        prof = json.loads(line)
        if prof["vendor"] == "Brother":      # a page that shows no copy counter
            prof["web"] = [{"path": BROTHER_PATH, "scheme": "http", "port": 80,
                            "fields": {"counters.copy": {"after": "Copy Count", "within": 40}}}]
            lines[i] = json.dumps(prof)
    path.write_text("\n".join(lines) + "\n")
    lib = profiles.load([str(path)])
    bro = [t for t in site.truth() if site.device(t["name"]).web.style == "brother"][0]
    fetches = []
    real = web.fetch

    async def counting(*a, **kw):
        fetches.append(a[1]["path"])
        return await real(*a, **kw)

    async def main():
        client = snmp.Client(timeout_ms=1000, retries=1)
        state = devstate.DeviceState()
        col = collector.Collector(client, profile_list=lib, state=state, web_ports={80: HTTP_PORT})
        try:
            return [await col.collect(bro["ip"], SNMP_PORT, "counters") for _ in range(3)]
        finally:
            client.close()

    web.fetch = counting
    try:
        recs = asyncio.run(main())
    finally:
        web.fetch = real
    assert fetches == [BROTHER_PATH]
    assert all("copy" not in r["counters"] for r in recs)


# ---------------------------------------------------------------- hostile pages
MARKER = b"<td>Total Impressions</td>"
FIELDS = {"counters.total": {"after": MARKER.decode(), "within": 60}}


class _Hostile(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        s.settimeout(5)
        req = b""
        while b"\r\n\r\n" not in req and len(req) < 4096:
            got = s.recv(1024)
            if not got:
                return
            req += got
        path = req.split(b" ")[1].decode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
        try:
            if path == "/huge":                       # announces 50 MB, never shows the marker
                s.sendall(head + b"Content-Length: 52428800\r\n\r\n")
                for _ in range(3200):
                    s.sendall(b"<p>" + b"x" * 16380 + b"</p>")
            elif path == "/found-early":              # the value, then megabytes: read stops early
                s.sendall(head + b"Content-Length: 52428800\r\n\r\n" + MARKER + b"<td>777</td>" + b" " * 100)
                for _ in range(3200):
                    s.sendall(b" " * 16384)
            elif path in ("/endless-chunked", BROTHER_PATH):
                s.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
                for _ in range(100000):
                    s.sendall(b"400\r\n" + b"z" * 1024 + b"\r\n")
            elif path == "/garbage":
                s.sendall(bytes(range(256)) * 8)
            elif path == "/slow":                      # a byte every 0.3 s
                s.sendall(head + b"Content-Length: 1000\r\n\r\n")
                for _ in range(30):
                    s.sendall(b"a")
                    time.sleep(0.3)
            elif path == "/long-header":
                s.sendall(b"HTTP/1.1 200 OK\r\nX-Junk: " + b"j" * 200000 + b"\r\n\r\n")
            elif path == "/bad-chunk":
                s.sendall(head + b"Transfer-Encoding: chunked\r\n\r\nzz-top\r\nhello\r\n0\r\n\r\n")
            elif path == "/loop":
                s.sendall(b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n")
            elif path == "/away":
                s.sendall(b"HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1/x\r\nContent-Length: 0\r\n\r\n")
            elif path == "/short":
                s.sendall(head + b"Content-Length: 5000\r\n\r\n" + MARKER + b"<td>12")
            elif path == "/ok-chunked":
                body = b"<html>" + b"<!-- pad -->" * 300 + MARKER + b"<td class=\"n\">31,337</td></html>"
                s.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
                for i in range(0, len(body), 100):
                    part = body[i:i + 100]
                    s.sendall(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
                s.sendall(b"0\r\n\r\n")
            else:
                s.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass   # the client hung up, as it should past its cap


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


# path -> ("found", value) or ("error", words of the message)
CASES = {
    "/ok-chunked": ("found", 31337),
    "/found-early": ("found", 777),
    "/huge": ("error", "larger than"),
    "/endless-chunked": ("error", "larger than"),
    "/garbage": ("error", "not an HTTP answer"),
    "/slow": ("error", "too slow"),
    "/long-header": ("error", "longer than"),
    "/bad-chunk": ("error", "bad chunk size"),
    "/loop": ("error", "redirects"),
    "/away": ("error", "another host"),
    "/short": ("error", "closed"),
    "/missing": ("error", "HTTP 404"),
}
CAP = 65536
TIMEOUT_MS = 1500


@pytest.fixture(scope="module")
def hostile():
    servers = [_Server((HOSTILE, HOSTILE_PORT), _Hostile), _Server((NET + "17", HOSTILE_AT_PRINTER), _Hostile)]
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield servers
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_a_hostile_page_is_logged_and_the_record_keeps_what_snmp_gave(site, hostile):
    # the Brother printer's page answers with endless chunks: the box gives up at its cap
    r = subprocess.run([FBTOOL, "scan", "-v", "--json", "--port", str(SNMP_PORT), "--web-port",
                        "80=%d" % HOSTILE_AT_PRINTER, NET + "17"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (rec,) = json.loads(r.stdout)
    assert "collector: %s web:http:%s: page larger than %d bytes" % (NET + "17", BROTHER_PATH, web.MAX_BYTES) \
        in r.stderr, r.stderr
    assert "total" not in rec["counters"] and "counters.total" not in rec["sources"]
    assert rec["serial"] is None and "serial" not in rec["sources"]     # only the page has it
    assert rec["model"] == "HL-L6400DW" and rec["sources"]["model"] == "profile Brother: hrDeviceDescr"
    assert rec["firmware"] == "1.05"   # from sysDescr: the page gave nothing


def _check(path, outcome):
    kind, what = CASES[path]
    if kind == "found":
        assert outcome == ["found", {"counters.total": what}], (path, outcome)
    else:
        assert outcome[0] == "error" and what in outcome[1], (path, outcome)
        assert outcome[2] == {}, (path, outcome)   # nothing half-read is reported


def test_hostile_pages_on_cpython(hostile):
    async def one(path):
        page = {"scheme": "http", "path": path, "port": HOSTILE_PORT}
        try:
            found, _ = await web.fetch(HOSTILE, page, FIELDS, cap=CAP, timeout_ms=TIMEOUT_MS)
            return ["found", found]
        except web.WebError as e:
            return ["error", str(e), e.found]
    for path in CASES:
        t0 = time.monotonic()
        _check(path, asyncio.run(one(path)))
        assert time.monotonic() - t0 < 10


MP_SCRIPT = """
import sys, json
sys.path.insert(0, sys.argv[1])
sys.path.append('.frozen')
import asyncio
from fleetbox import web
opts = json.loads(sys.stdin.readline())
async def one(path):
    page = {"scheme": "http", "path": path, "port": opts["port"]}
    try:
        found, _ = await web.fetch(opts["host"], page, opts["fields"], cap=opts["cap"], timeout_ms=opts["timeout_ms"])
        return ["found", found]
    except web.WebError as e:
        return ["error", str(e), e.found]
for path in opts["paths"]:
    print(json.dumps([path, asyncio.run(one(path))]))
"""


def test_hostile_pages_on_micropython(hostile, tmp_path):
    script = tmp_path / "hostile.py"
    script.write_text(MP_SCRIPT)
    opts = {"host": HOSTILE, "port": HOSTILE_PORT, "fields": FIELDS, "cap": CAP, "timeout_ms": TIMEOUT_MS,
            "paths": list(CASES)}
    r = subprocess.run([MICROPYTHON, "-X", "heapsize=256K", str(script), os.path.join(ROOT, "firmware")],
                       input=json.dumps(opts) + "\n", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout
    seen = set()
    for line in r.stdout.splitlines():
        path, outcome = json.loads(line)
        _check(path, outcome)
        seen.add(path)
    assert seen == set(CASES)
