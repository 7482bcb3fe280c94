"""Embedded web servers of simulated printers whose counters only show on their web page.

A dynamic device with ``web: {style: ...}`` in site.yaml gets, on its own loopback address:

* ``style: hp-ews`` -- an HP EWS: plain HTTP answers every GET with a 301 to the HTTPS
  usage page (self-signed certificate made with `cryptography`), which is long (inline
  script and style, ~60 KB, sent with a Content-Length) and shows the live total as
  ``48,213.0`` in ``<td id="UsagePage.EquivalentImpressionsTable.Total.Total">``;
* ``style: brother`` -- a Brother "general information" page over plain HTTP, sent in
  chunks (``Transfer-Encoding: chunked``), total under ``<dt>Page Counter</dt>``;
* ``style: kyocera-ccrx`` -- Kyocera Command Center RX over HTTPS only (self-signed, as CCRX
  ships): its script "model" files, JavaScript assignments such as ``_pp.printertotal =
  ('12345');``. The counter file splits the live total into printer, copy and fax pages
  (each by colour); the configuration file holds serial and system firmware;
* ``style: ricoh-wim`` -- Ricoh Web Image Monitor's counter page over plain HTTP: rows
  ``<tr class="staticProp"><td></td><td nowrap>Total</td><td nowrap>:</td><td nowrap>N</td>``
  with Copier / Printer / Fax sections after the machine total.

The page always shows the agent's live counter (LiveDevice.state()). Ports are 80/443 unless
the site maps them (``Site(web_ports={80: 17080, 443: 17444})``: the box is told the same map).
"""
from __future__ import annotations

import datetime
import http.server
import ssl
import tempfile
import threading
from pathlib import Path

STYLES = ("hp-ews", "brother", "kyocera-ccrx", "ricoh-wim")
HP_PATH = "/hp/device/InternalPages/Index?id=UsagePage"
BROTHER_PATH = "/general/information.html?kind=item"
KYOCERA_COUNTER_PATH = "/js/jssrc/model/dvcinfo/dvccounter/DvcInfo_Counter_PrnCounter.model.htm"
KYOCERA_CONFIG_PATH = "/js/jssrc/model/dvcinfo/dvcconfig/DvcConfig_Config.model.htm?arg1=0"
RICOH_PATH = "/web/guest/en/websys/status/getUnificationCounter.cgi"
_PAD_CSS = "".join(".hp-col-%d{margin:0 %dpx;padding:%dpx;color:#%06x}\n" % (i, i % 7, i % 5, i * 977 % 0xFFFFFF)
                   for i in range(1400))


def self_signed(directory: Path, address: str, common_name: str = "HP Jetdirect %s") -> tuple[str, str]:
    """(cert file, key file) of a self-signed certificate for `address`, as printers ship."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name % address)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), False)
            .sign(key, hashes.SHA256()))
    cf, kf = directory / ("%s.crt" % address), directory / ("%s.key" % address)
    cf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kf.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return str(cf), str(kf)


def hp_page(device, total: int) -> str:
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%(model)s &nbsp; %(addr)s</title>
<style type="text/css">
%(css)s</style>
<script type="text/javascript">var hpPageId = "UsagePage"; var refresh = 30000;</script>
</head><body class="hp-body"><div id="contentPane"><h1 id="PageTitle">Usage Page</h1>
<table id="UsagePage.DeviceInformation" class="hp-table">
<tr><td>Product Name:</td><td id="UsagePage.DeviceInformation.ProductName">HP %(model)s</td></tr>
<tr><td>Printer Serial Number:</td><td id="UsagePage.DeviceInformation.DeviceSerialNumber">%(serial)s</td></tr>
</table>
<table id="UsagePage.EquivalentImpressionsTable" class="hp-table mainContentArea">
<thead><tr><th>&nbsp;</th><th>Print</th><th>Total</th></tr></thead>
<tr><td id="UsagePage.EquivalentImpressionsTable.Letter.Title">Letter (8.5x11)</td><td>0.0</td><td>0.0</td></tr>
<tr class="total"><td id="UsagePage.EquivalentImpressionsTable.Total.Title">Total</td>
<td id="UsagePage.EquivalentImpressionsTable.Print.Total" class="align-right">%(total)s</td>
<td id="UsagePage.EquivalentImpressionsTable.Total.Total" class="align-right">%(total)s</td></tr>
</table></div></body></html>
""" % {"model": device.model, "addr": device.address, "css": _PAD_CSS, "serial": device.live.serial or "",
       "total": "{:,.1f}".format(total)}


def brother_page(device, total: int) -> str:
    rows = "".join("<dt>%s</dt><dd>%s</dd>\n" % kv for kv in (
        ("Model&#32;Name", "Brother %s" % device.model), ("Serial&#32;no.", device.live.serial or ""),
        ("Main&#32;Firmware&#32;Version", "ZC"), ("Memory&#32;Size", "256MB"),
        ("Page Counter", str(total)), ("Drum&#32;Count", str(total % 12000))))
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="UTF-8"><title>Brother %(model)s</title>
<link rel="stylesheet" href="/common/css/common.css"></head>
<body><div id="pageContents"><h2>Maintenance&#32;Information</h2>
<div class="contentsGroup"><dl class="items">
%(rows)s</dl></div></div></body></html>
""" % {"model": device.model, "rows": rows}


def kyocera_counters(total: int, color_ratio: float) -> dict:
    """The live total split as CCRX shows it: printer, copy and fax pages (fax prints are
    black and white), each function by colour; the parts always add up to `total`."""
    copy = total * 28 // 100
    fax = total * 3 // 100
    printer = total - copy - fax
    out = {"copytotal": copy, "printertotal": printer, "faxBlackWhite": fax}
    for fn, n in (("copy", copy), ("printer", printer)):
        full = int(n * color_ratio)
        single = (n - full) // 50
        out[fn + "FullColor"], out[fn + "SingleColor"], out[fn + "BlackWhite"] = full, single, n - full - single
    return out


def kyocera_counter_model(device, total: int) -> str:
    c = kyocera_counters(total, device.live.color_ratio)
    sizes = "".join("_pp.paperSizeCounter.push(parseInt('%d', 10));\n" % (total * k // 97) for k in (61, 23, 9, 4))
    return ("var _pp = new Object();\n_pp.paperSizeCounter = new Array();\n" + sizes +
            "_pp.copyBlackWhite = ('%(copyBlackWhite)d').toString();\n"
            "_pp.copyFullColor = ('%(copyFullColor)d').toString();\n"
            "_pp.copySingleColor = ('%(copySingleColor)d').toString();\n"
            "_pp.copytotal = ('%(copytotal)d');\n"
            "_pp.printerBlackWhite = ('%(printerBlackWhite)d').toString();\n"
            "_pp.printerFullColor = ('%(printerFullColor)d').toString();\n"
            "_pp.printerSingleColor = ('%(printerSingleColor)d').toString();\n"
            "_pp.printertotal = ('%(printertotal)d');\n"
            "_pp.faxBlackWhite = ('%(faxBlackWhite)d').toString();\n"
            "_pp.counterReset = ('0');\n" % c)


def kyocera_config_model(device) -> str:
    d = device.live
    mac = ":".join("%02x" % b for b in d.mac)
    return ("var _pp = new Object();\n"
            "_pp.hostName = '%s';\n_pp.location = '%s';\n_pp.model = '%s';\n_pp.serialNumber = '%s';\n"
            "_pp.assetNumber = '';\n_pp.macAddress = '%s';\n_pp.system = '%s';\n_pp.engine = '%s';\n"
            "_pp.panel = '%s';\n" % (d.sys_name, d.location, device.model, d.serial or "", mac,
                                     device.spec["web"].get("system", "2R7_2000.003.205"), "2R7_1000.003.011",
                                     "2R7_7000.003.102"))


def ricoh_page(device, total: int) -> str:
    """Web Image Monitor's counter page: the machine total first, then by function."""
    color = int(total * device.live.color_ratio)
    copy = total * 35 // 100
    fax = total * 2 // 100
    printer = total - copy - fax
    copy_color = int(copy * device.live.color_ratio)
    printer_color = color - copy_color

    def row(label, value):
        return ('<tr class="staticProp"><td nowrap="nowrap" width="10"></td><td nowrap="nowrap">%s</td>'
                '<td nowrap="nowrap">:</td><td nowrap="nowrap">%d</td><td width="100%%"></td></tr>\n' % (label, value))

    def section(title, rows):
        return ('<tr><td colspan="5" class="listTitle"><b>%s</b></td></tr>\n' % title) + "".join(row(*r) for r in rows)
    body = (row("Total", total) +
            section("Copier", [("Black &amp; White", copy - copy_color), ("Full Color", copy_color),
                               ("Single Color", 0), ("Two-color", 0)]) +
            section("Printer", [("Black &amp; White", printer - printer_color), ("Full Color", printer_color),
                                ("Single Color", 0), ("Two-color", 0)]) +
            section("Fax", [("Black &amp; White", fax)]) +
            section("Send/TX Total", [("Black &amp; White", total // 9), ("Color", total // 31)]) +
            section("Fax Transmission", [("Total", fax // 2)]) +
            section("Other Function(s)", [("A3/DLT", total // 40), ("Duplex", total // 3)]))
    return """<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">
<html lang="en"><head><meta http-equiv="Content-Type" content="text/html; charset=UTF-8">
<title>Web Image Monitor</title>
<link rel="stylesheet" type="text/css" href="/common/css/b_common.css">
<script type="text/javascript" src="/common/js/b_common.js"></script>
<script type="text/javascript">var wimTimer = null; function reloadPage(){location.reload();}</script>
</head><body><div class="breadcrumbs">Home &gt; Status/Information &gt; Counter</div>
<div class="standartTitle">Counter</div><div>Device Name : %(model)s</div>
<table width="100%%" border="0" cellspacing="0" cellpadding="2" class="staticProp">
%(body)s</table>
<form name="backForm"><input type="button" value="Back" onclick="history.back()"></form>
</body></html>
""" % {"model": "RICOH %s" % device.model, "body": body}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Virata-EmWeb/R6_2_1"

    def log_message(self, *args):
        pass

    def version_string(self):
        return getattr(self.server, "banner", None) or self.server_version

    def do_GET(self):
        srv = self.server
        d = srv.device
        if srv.role == "redirect":
            self.send_response(301)
            self.send_header("Location", "https://%s%s" % (d.address, HP_PATH))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        total = d.live.state()["total"] & 0xFFFFFFFF
        if self.path != KYOCERA_CONFIG_PATH:      # the configuration page shows no counter
            srv.served.append(total)
        if srv.role == "hp" and self.path == HP_PATH:
            body = hp_page(d, total).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if srv.role == "brother" and self.path == BROTHER_PATH:
            body = brother_page(d, total).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 300):
                part = body[i:i + 300]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        if srv.role == "kyocera" and self.path in (KYOCERA_COUNTER_PATH, KYOCERA_CONFIG_PATH):
            page = kyocera_counter_model(d, total) if self.path == KYOCERA_COUNTER_PATH else kyocera_config_model(d)
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(body)
            return
        if srv.role == "ricoh" and self.path == RICOH_PATH:
            # no length, no chunks: the page ends when the server closes the connection
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=UTF-8")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(ricoh_page(d, total).encode())
            return
        body = b"<html><body>404 Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class PrinterWeb:
    """The web server(s) of one simulated printer. `served`: the totals its pages showed."""

    def __init__(self, device, web_ports: dict | None = None):
        spec = device.spec.get("web") or {}
        self.style = spec.get("style")
        if self.style not in STYLES:
            raise ValueError("device %s: web style %r not one of %s" % (device.name, self.style, STYLES))
        ports = web_ports or {}
        self.device = device
        self.http_port = int(ports.get(80, ports.get("80", 80)))
        self.https_port = int(ports.get(443, ports.get("443", 443)))
        self.servers: list[_Server] = []
        self.served: list[int] = []
        self._tmp = None

    @property
    def source(self) -> str:
        """The record's expected source of the total (docs/profiles.md: web:SCHEME:PATH)."""
        return {"hp-ews": "web:https:" + HP_PATH, "brother": "web:http:" + BROTHER_PATH,
                "kyocera-ccrx": "web:https:" + KYOCERA_COUNTER_PATH, "ricoh-wim": "web:http:" + RICOH_PATH}[self.style]

    @property
    def serial_source(self) -> str | None:
        """The page that shows the serial, when it does."""
        return {"hp-ews": "web:https:" + HP_PATH, "brother": "web:http:" + BROTHER_PATH,
                "kyocera-ccrx": "web:https:" + KYOCERA_CONFIG_PATH}.get(self.style)

    def _serve(self, port: int, role: str, tls: tuple[str, str] | None = None, banner: str | None = None):
        srv = _Server((self.device.address, port), _Handler)
        srv.device, srv.role, srv.served, srv.banner = self.device, role, self.served, banner
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                         name="web-%s-%d" % (self.device.name, port), daemon=True).start()
        self.servers.append(srv)

    def start(self):
        try:
            if self.style == "hp-ews":
                self._tmp = tempfile.TemporaryDirectory(prefix="fleetbox-web-")
                tls = self_signed(Path(self._tmp.name), self.device.address)
                self._serve(self.http_port, "redirect")
                self._serve(self.https_port, "hp", tls)
            elif self.style == "kyocera-ccrx":     # HTTPS only (CCRX's "HTTPS only" default)
                self._tmp = tempfile.TemporaryDirectory(prefix="fleetbox-web-")
                tls = self_signed(Path(self._tmp.name), self.device.address, "KYOCERA Document Solutions %s")
                self._serve(self.https_port, "kyocera", tls, banner="KM-MFP-http/V0.0.1")
            elif self.style == "ricoh-wim":
                self._serve(self.http_port, "ricoh", banner="Web-Server/3.0")
            else:
                self._serve(self.http_port, "brother")
        except BaseException:
            self.stop()
            raise

    def stop(self):
        servers, self.servers = self.servers, []
        for s in servers:
            s.shutdown()
            s.server_close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
