"""The hostile-printer kit: SNMP agents and web pages that send crafted but well-formed replies.

Each `HostileAgent` answers SNMP v1/v2c GET, GETNEXT and GETBULK (pysnmp's protocol API,
so every message is valid BER) from a real printer's recording (../shared/printer-walks),
changed by its `behaviour`:

- `normal`      the recording as it is (a well-behaved printer next to the hostile ones);
- `escapes`     every string holds terminal escapes, control characters, NULs, bytes that
                are not UTF-8 and long text;
- `wrong-types` OctetString where a Counter or Integer belongs and the reverse, an OID as a
                supply level, Counter64 and IpAddress in odd places;
- `absurd`      counters at 2^32-1 and 2^64-1, levels below -2 and far above the capacity,
                a capacity of 0, index numbers at 2^31-1, uptime 0;
- `huge`        20000-row supply, alert, console, interface and device tables;
- `looping`     GETNEXT and GETBULK inside a table answer OIDs that do not increase (the same
                OID again, or back to the table's first row): a walk that trusts the agent
                never ends;
- `flood`       GETBULK answers ignore max-repetitions and fill the datagram (~60 KB);
- `long-rows`   24 supplies whose descriptions are 1,000 bytes long: a GETBULK of many rows
                outgrows the box's 8 KB receive buffer, one of a few rows does not.

`HostileWeb` serves a printer's web page (simulator/webpages.py's Brother page) crafted the
same way: `huge` (an endless page), `escapes`, `absurd` (a counter of 40 digits), `drip`
(one byte now and then), `long-header` (a 100 KB header line), `bad-chunk` (a chunk size of
2^64-1).

Everything listens on 127.0.0.0/8 only; `HostilePrinters.stop()` ends it all.
"""
import bisect
import http.server
import os
import socket
import threading
import time

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

from simulator.site import walks_dir

BEHAVIOURS = ("normal", "escapes", "wrong-types", "absurd", "huge", "looping", "flood", "long-rows")
LONG_ROWS = 24
WEB_BEHAVIOURS = ("normal", "huge", "escapes", "absurd", "drip", "long-header", "bad-chunk")
HUGE_ROWS = 20000
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31m\r\n\x00\x9b31m\u202e"
_TAGS = {"2": "Integer", "4": "OctetString", "5": "Null", "6": "ObjectIdentifier", "64": "IpAddress",
         "65": "Counter32", "66": "Gauge32", "67": "TimeTicks", "70": "Counter64"}
SUPPLIES = (1, 3, 6, 1, 2, 1, 43, 11, 1, 1)
LIFE_COUNT = (1, 3, 6, 1, 2, 1, 43, 10, 2, 1, 4, 1, 1)
ALERTS = (1, 3, 6, 1, 2, 1, 43, 18, 1, 1)
CONSOLE = (1, 3, 6, 1, 2, 1, 43, 16, 5, 1, 2, 1)
IF_TABLE = (1, 3, 6, 1, 2, 1, 2, 2, 1)
HR_DEVICE = (1, 3, 6, 1, 2, 1, 25, 3, 2, 1)
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SERIAL_OIDS = ((1, 3, 6, 1, 2, 1, 43, 5, 1, 1, 17, 1), (1, 3, 6, 1, 4, 1, 2435, 2, 3, 9, 4, 2, 1, 5, 5, 1, 0))
LOOP_TABLES = (SUPPLIES, (1, 3, 6, 1, 2, 1, 43, 10, 2, 1), IF_TABLE, HR_DEVICE, ALERTS)


def oid(text):
    return tuple(int(x) for x in text.strip(".").split("."))


def read_recording(name, kind="recordings"):
    """{oid tuple: (type name, python value)} of a .snmprec recording; lines that do not parse
    are skipped (the recordings are real devices' walks)."""
    out = {}
    path = os.path.join(str(walks_dir()), kind, name + ".snmprec")
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            parts = line.rstrip("\r\n").split("|", 2)
            if len(parts) != 3:
                continue
            key, tag, val = parts
            base = tag.split(":")[0]
            hexed = base.endswith("x")
            kind_name = _TAGS.get(base.rstrip("x"))
            if kind_name is None:
                continue
            try:
                if kind_name == "OctetString":
                    v = bytes.fromhex(val) if hexed else val.encode("utf-8", "surrogateescape")
                elif kind_name == "ObjectIdentifier":
                    v = oid(val)
                elif kind_name == "IpAddress":
                    v = val
                elif kind_name == "Null":
                    v = None
                else:
                    v = int(val)
                out[oid(key)] = (kind_name, v)
            except ValueError:
                continue
    return out


def serial_of(address):
    """The serial the kit gives the printer at `address` (SNMP and its web page agree)."""
    return "HOSTILE%03d" % int(address.rsplit(".", 1)[1])


def _under(key, prefix):
    return key[:len(prefix)] == prefix


def craft(mib, behaviour):
    """The recording `mib` changed by `behaviour` (a new dict)."""
    mib = dict(mib)
    if behaviour == "escapes":
        for key, (kind, v) in list(mib.items()):
            if kind == "OctetString" and len(v) < 200:
                # DisplayString's 255 bytes at most: a printer's reply still fits a datagram
                text = (ESCAPES + (v.decode("latin-1") if v else "") + "\u00e9" * 100).encode("utf-8")
                mib[key] = ("OctetString", text[:250] + b"\xff\xfe\xc3")   # ends in bytes that are not UTF-8
    elif behaviour == "wrong-types":
        for key, (kind, _) in list(mib.items()):
            if kind in ("Counter32", "Counter64", "Gauge32"):
                mib[key] = ("OctetString", b"12345 pages\x1b[0m")
            elif kind == "Integer" and _under(key, SUPPLIES):
                mib[key] = ("ObjectIdentifier", (1, 3, 6, 1, 4, 1, 9999))
            elif kind == "Integer":
                mib[key] = ("OctetString", b"-7")
            elif kind == "OctetString":
                mib[key] = ("Counter64", 18446744073709551615)
            elif kind == "ObjectIdentifier":
                mib[key] = ("IpAddress", "127.0.0.1")
            elif kind == "TimeTicks":
                mib[key] = ("OctetString", b"yesterday")
    elif behaviour == "absurd":
        for key, (kind, _) in list(mib.items()):
            if kind in ("Counter32", "Gauge32"):
                mib[key] = (kind, 4294967295)
            elif kind == "Counter64":
                mib[key] = (kind, 18446744073709551615)
            elif kind == "Integer" and _under(key, SUPPLIES + (8,)):      # max capacity
                mib[key] = (kind, 0)
            elif kind == "Integer" and _under(key, SUPPLIES + (9,)):      # level
                mib[key] = (kind, -2147483648 if key[-1] % 2 else 2147483647)
            elif kind == "Integer":
                mib[key] = (kind, 2147483647)
            elif kind == "TimeTicks":
                mib[key] = (kind, 0)
        mib[LIFE_COUNT] = ("Counter64", 18446744073709551615)
        mib[SUPPLIES + (6, 1, 2147483647)] = ("OctetString", b"Cartridge at index 2^31-1")
        mib[SUPPLIES + (9, 1, 2147483647)] = ("Integer", -1000000)
    elif behaviour == "huge":
        for i in range(1, HUGE_ROWS + 1):
            mib[SUPPLIES + (6, 1, i)] = ("OctetString", b"Toner %d" % i)
            mib[SUPPLIES + (8, 1, i)] = ("Integer", 100)
            mib[SUPPLIES + (9, 1, i)] = ("Integer", i % 101)
            mib[ALERTS + (8, 1, i)] = ("Integer", 8)
            mib[CONSOLE + (i,)] = ("OctetString", b"Line %d" % i)
            mib[IF_TABLE + (2, i)] = ("OctetString", b"eth%d" % i)
            mib[IF_TABLE + (6, i)] = ("OctetString", bytes([2, 0, 0, i >> 16 & 255, i >> 8 & 255, i & 255]))
            mib[HR_DEVICE + (3, i)] = ("OctetString", b"Device %d" % i)
    elif behaviour == "long-rows":
        mib = {k: v for k, v in mib.items() if not _under(k, SUPPLIES)}
        for i in range(1, LONG_ROWS + 1):
            mib[SUPPLIES + (4, 1, i)] = ("Integer", 7)
            mib[SUPPLIES + (5, 1, i)] = ("Integer", 3)
            mib[SUPPLIES + (6, 1, i)] = ("OctetString", (b"Long supply %02d " % i).ljust(1000, b"."))
            mib[SUPPLIES + (7, 1, i)] = ("Integer", 13)
            mib[SUPPLIES + (8, 1, i)] = ("Integer", 100)
            mib[SUPPLIES + (9, 1, i)] = ("Integer", i)
    return mib


class Mib:
    """A sorted MIB view with GETNEXT that `looping` makes non-increasing."""

    def __init__(self, objects, behaviour):
        self.objects = objects
        self.keys = sorted(objects)
        self.behaviour = behaviour

    def get(self, key):
        return self.objects.get(key)

    def next(self, key):
        if self.behaviour == "looping":
            for table in LOOP_TABLES:
                if _under(key, table):
                    i = bisect.bisect_right(self.keys, key)
                    if key in self.objects and key[-1] % 3 == 0:
                        return key                                     # the same OID again
                    if i < len(self.keys) and _under(self.keys[i], table):
                        return self.keys[i]
                    return self.keys[bisect.bisect_left(self.keys, table)]   # back to the first row
        i = bisect.bisect_right(self.keys, key)
        return self.keys[i] if i < len(self.keys) else None


def _value(pm, kind, v):
    if kind == "Counter64" and not hasattr(pm, "Counter64"):
        kind = "Counter32"
        v = min(v, 4294967295)
    if kind == "ObjectIdentifier":
        return pm.ObjectIdentifier(v)
    if kind == "Null":
        return pm.Null("")
    return getattr(pm, kind)(v)


class HostileAgent:
    """One hostile SNMP agent on (address, port), serving from a thread. `.requests` counts the
    messages it answered (the collector's work on it)."""

    def __init__(self, address, port, behaviour, recording="printmaster_brother", drop=()):
        if behaviour not in BEHAVIOURS:
            raise ValueError("behaviour %r not one of %s" % (behaviour, BEHAVIOURS))
        base = read_recording(recording)
        for prefix in drop:
            base = {k: v for k, v in base.items() if not _under(k, prefix)}
        # One device per address: the box merges addresses that share a serial or a MAC.
        for key in SERIAL_OIDS:
            if key in base:
                base[key] = ("OctetString", serial_of(address).encode())
        for key, (kind, v) in list(base.items()):
            if _under(key, IF_TABLE + (6,)) and kind == "OctetString" and len(v) == 6:
                tail = bytes(int(x) for x in address.split(".")[2:])
                base[key] = (kind, bytes([2, 0x66, 0x14, key[-1] & 255]) + tail)
        self.mib = Mib(craft(base, behaviour), behaviour)
        self.behaviour = behaviour
        self.address, self.port = address, port
        self.requests = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="hostile-snmp-%s" % address, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping:
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                reply = self.answer(data)
            except Exception:   # noqa: BLE001  a message pysnmp cannot read goes unanswered, as on a printer
                continue
            if reply:
                self.requests += 1
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    pass

    def answer(self, data):
        version = int(api.decodeMessageVersion(data))
        pm = api.PROTOCOL_MODULES[version]
        req, _ = decoder.decode(data, asn1Spec=pm.Message())
        if bytes(pm.apiMessage.get_community(req)) != b"public":
            return None
        rsp = pm.apiMessage.get_response(req)
        qpdu, rpdu = pm.apiMessage.get_pdu(req), pm.apiMessage.get_pdu(rsp)
        asked = [tuple(o) for o, _ in pm.apiPDU.get_varbinds(qpdu)]
        out = []
        get = qpdu.isSameTypeWith(pm.GetRequestPDU())
        if get or qpdu.isSameTypeWith(pm.GetNextRequestPDU()):
            # one varbind per OID asked: the object itself (GET) or the next one (GETNEXT)
            for key in asked:
                found = (key if key in self.mib.objects else None) if get else self.mib.next(key)
                if found is None:
                    if version == api.SNMP_VERSION_1:
                        pm.apiPDU.set_error_status(rpdu, 2)      # noSuchName, for the whole request
                        pm.apiPDU.set_error_index(rpdu, asked.index(key) + 1)
                        out = [(k, pm.Null("")) for k in asked]
                        break
                    out.append((key, pm.rfc1905.noSuchInstance if get else pm.rfc1905.endOfMibView))
                else:
                    out.append((found, _value(pm, *self.mib.get(found))))
        elif version != api.SNMP_VERSION_1 and qpdu.isSameTypeWith(pm.GetBulkRequestPDU()):
            nonrep = int(pm.apiBulkPDU.get_non_repeaters(qpdu))
            reps = int(pm.apiBulkPDU.get_max_repetitions(qpdu))
            if self.behaviour == "flood":
                reps = 100000
            for key in asked[:nonrep]:
                nxt = self.mib.next(key)
                out.append((nxt, _value(pm, *self.mib.get(nxt))) if nxt else (key, pm.rfc1905.endOfMibView))
            cursors = asked[nonrep:]
            size = 0
            for _ in range(reps):
                if not cursors:
                    break
                row = []
                for i, key in enumerate(cursors):
                    nxt = self.mib.next(key)
                    if nxt is None:
                        row.append((key, pm.rfc1905.endOfMibView))
                    else:
                        row.append((nxt, _value(pm, *self.mib.get(nxt))))
                        cursors[i] = nxt
                        size += len(nxt) + 16 + len(str(self.mib.get(nxt)[1]))
                out.extend(row)
                if size > 60000 or all(v is pm.rfc1905.endOfMibView for _, v in row):
                    break
        else:
            return None
        pm.apiPDU.set_varbinds(rpdu, out)
        return encoder.encode(rsp)

    def stop(self):
        self.stopping = True
        self.sock.close()
        self.thread.join(5)


# -- web pages

def brother_page(serial, total):
    """simulator/webpages.py's Brother page, with the serial and total given as text."""
    return ("<html><head><title>Brother MFC-L2710DW series</title></head><body><dl class=\"items\">"
            "<dt>Model&#32;Name</dt><dd>Brother MFC-L2710DW series</dd>"
            "<dt>Serial&#32;no.</dt><dd>%s</dd>"
            "<dt>Main&#32;Firmware&#32;Version</dt><dd>ZC</dd>"
            "<dt>Page Counter</dt><dd>%s</dd></dl></body></html>" % (serial, total))


class _WebHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.requests += 1
        b = srv.behaviour
        try:
            if b == "long-header":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 100000 + b"\r\n\r\n")
                return
            if b == "bad-chunk":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n<html>")
                return
            if b == "huge":
                # An endless page: the counter never comes; the box must stop at its cap.
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<html>")
                junk = b"<div class=\"pad\">" + b"x" * 4000 + b"</div>\n"
                deadline = time.monotonic() + 20
                while not srv.stopping and time.monotonic() < deadline:
                    self.wfile.write(junk)
                    srv.sent += len(junk)
                return
            if b == "drip":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\n\r\n")
                deadline = time.monotonic() + 20
                while not srv.stopping and time.monotonic() < deadline:
                    self.wfile.write(b"<")
                    self.wfile.flush()
                    time.sleep(0.5)
                return
            if b == "normal":
                page = brother_page(srv.serial, "4321")
            elif b == "escapes":
                page = brother_page(ESCAPES + "E78SN\x1b[8m", "12" + "\x1b[2J" + "345")
            else:   # absurd
                page = brother_page("9" * 5000, "9" * 40)
            body = page.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass     # the box hung up: what it should do with such a page


class _WebServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class HostileWeb:
    """A printer's web server on (address, port) answering every GET the `behaviour` way."""

    def __init__(self, address, port, behaviour):
        if behaviour not in WEB_BEHAVIOURS:
            raise ValueError("web behaviour %r not one of %s" % (behaviour, WEB_BEHAVIOURS))
        self.srv = _WebServer((address, port), _WebHandler)
        self.srv.behaviour, self.srv.requests, self.srv.sent, self.srv.stopping = behaviour, 0, 0, False
        self.srv.serial = serial_of(address)
        self.thread = threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="hostile-web-%s" % address, daemon=True)
        self.thread.start()

    @property
    def requests(self):
        return self.srv.requests

    @property
    def sent(self):
        return self.srv.sent

    def stop(self):
        self.srv.stopping = True
        self.srv.shutdown()
        self.srv.server_close()


class HostilePrinters:
    """A site of printers: {address: (snmp behaviour, web behaviour or None)} on one SNMP port and
    one web port. A printer with a web behaviour is the `brother` recording without the counter
    SNMP would give, so the box reads its web page."""

    def __init__(self, printers, snmp_port, web_port):
        self.agents, self.webs = {}, {}
        try:
            for address, (behaviour, web) in printers.items():
                # with a web page: the brother recording without its SNMP counter, so the page counts
                self.agents[address] = HostileAgent(address, snmp_port, behaviour, *(
                    ("brother", [(1, 3, 6, 1, 2, 1, 43, 10, 2, 1, 4)]) if web else ()))
                if web:
                    self.webs[address] = HostileWeb(address, web_port, web)
        except BaseException:
            self.stop()
            raise

    def stop(self):
        for a in self.agents.values():
            a.stop()
        for w in self.webs.values():
            w.stop()
        self.agents, self.webs = {}, {}
