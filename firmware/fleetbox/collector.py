"""Collector: one address in, one device record (docs: shared/spec/device-record.md) out.

Standard MIBs first (SNMPv2-MIB, IF-MIB, HOST-RESOURCES-MIB, Printer-MIB). Vendor
knowledge arrives later as compiled profiles; this module only holds what every
printer shares.
"""
import asyncio

from fleetbox import ber, snmp
from fleetbox.port import time_s

SYS = "1.3.6.1.2.1.1."
SYS_DESCR = SYS + "1.0"
SYS_OBJECT_ID = SYS + "2.0"
SYS_UPTIME = SYS + "3.0"
SYS_CONTACT = SYS + "4.0"
SYS_NAME = SYS + "5.0"
SYS_LOCATION = SYS + "6.0"
IF_PHYS_ADDRESS = "1.3.6.1.2.1.2.2.1.6"
HR_DEVICE_TYPE = "1.3.6.1.2.1.25.3.2.1.2"
HR_DEVICE_DESCR = "1.3.6.1.2.1.25.3.2.1.3."
HR_DEVICE_STATUS = "1.3.6.1.2.1.25.3.2.1.5."
HR_PRINTER_STATUS = "1.3.6.1.2.1.25.3.5.1.1."
HR_PRINTER_ERRORS = "1.3.6.1.2.1.25.3.5.1.2."
HR_DEVICE_PRINTER = "1.3.6.1.2.1.25.3.1.5"
PRINTER_MIB = "1.3.6.1.2.1.43"
PRT_SERIAL = "1.3.6.1.2.1.43.5.1.1.17.1"
PRT_LIFE_COUNT = "1.3.6.1.2.1.43.10.2.1.4.1.1"
PRT_MARK_TECH = "1.3.6.1.2.1.43.10.2.1.2.1.1"
PRT_COLORANTS = "1.3.6.1.2.1.43.10.2.1.6.1.1"
PRT_SUPPLIES = "1.3.6.1.2.1.43.11.1.1"
PRT_COLORANT_VALUE = "1.3.6.1.2.1.43.12.1.1.4"

# sysObjectID enterprise number -> clean manufacturer name (OEMs share their maker's number).
ENTERPRISES = {
    11: "HP", 1602: "Canon", 1347: "Kyocera", 367: "Ricoh", 253: "Xerox", 2435: "Brother",
    641: "Lexmark", 18334: "Konica Minolta", 2385: "Sharp", 1248: "Epson", 2001: "OKI",
    236: "Samsung", 1129: "Toshiba", 674: "Dell", 297: "Fujifilm", 10642: "Zebra",
}

SUPPLY_KINDS = {3: "toner", 21: "toner", 4: "waste", 5: "ink", 6: "ink", 12: "ink", 9: "drum",
                10: "developer", 15: "fuser", 20: "transfer", 7: "waste", 8: "waste",
                13: "staples", 18: "waste", 19: "drum", 14: "other"}
SUPPLY_UNITS = {3: "tenThousandthsOfInches", 4: "micrometers", 7: "impressions", 8: "sheets",
                11: "hours", 12: "thousandthsOfOunces", 13: "tenthsOfGrams", 14: "hundrethsOfFluidOunces",
                15: "tenthsOfMilliliters", 16: "feet", 17: "meters", 18: "items", 19: "percent"}
MARK_TECH = {2: "laser", 3: "laser", 4: "laser", 5: "laser", 6: "laser", 7: "impact", 8: "impact",
             9: "impact", 10: "inkjet", 11: "inkjet", 12: "inkjet", 13: "inkjet", 14: "solid-ink",
             15: "impact", 16: "thermal", 17: "thermal", 18: "thermal", 19: "thermal", 20: "thermal",
             21: "laser", 22: "laser", 23: "thermal", 24: "thermal", 25: "laser", 26: "laser", 27: "laser"}
DEVICE_STATUS = {1: "unknown", 2: "running", 3: "warning", 4: "testing", 5: "down"}
PRINTER_STATUS = {1: "other", 2: "unknown", 3: "idle", 4: "printing", 5: "warmup"}
ERROR_BITS = ("lowPaper", "noPaper", "lowToner", "noToner", "doorOpen", "jammed", "offline",
              "serviceRequested", "inputTrayMissing", "outputTrayMissing", "markerSupplyMissing",
              "outputNearFull", "outputFull", "inputTrayEmpty", "overduePreventMaint")
LOW_PERCENT = 10


def text(value):
    """Device text to str: UTF-16 with a BOM, else UTF-8, else Latin-1; NULs and blanks trimmed."""
    if value is None or ber.is_exception(value):
        return None
    if isinstance(value, str):
        s = value
    else:
        b = bytes(value)
        if b[:2] in (b"\xff\xfe", b"\xfe\xff"):
            s = _utf16(b)
        else:
            try:
                s = b.decode("utf-8")
            except UnicodeError:
                s = "".join(chr(c) for c in b)
    s = s.replace("\x00", "").strip()
    return s or None


def _utf16(b):
    # By hand: MicroPython's bytes.decode knows only UTF-8. Surrogate pairs become U+FFFD.
    little = b[0] == 0xFF
    out = []
    for i in range(2, len(b) - 1, 2):
        c = b[i] | (b[i + 1] << 8) if little else (b[i] << 8) | b[i + 1]
        out.append(chr(c) if c < 0xD800 or c > 0xDFFF else "\ufffd")
    return "".join(out)


def integer(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def manufacturer_of(sys_object_id, descr):
    if sys_object_id and sys_object_id.startswith("1.3.6.1.4.1."):
        arcs = sys_object_id.split(".")
        if len(arcs) > 6 and arcs[6].isdigit():
            name = ENTERPRISES.get(int(arcs[6]))
            if name:
                return name
    d = (descr or "").lower()
    for name in ENTERPRISES.values():
        if name.lower() in d:
            return name
    if "hewlett" in d or "jetdirect" in d or "laserjet" in d:
        return "HP"
    return None


def clean_model(model):
    """Drop the firmware noise some devices append ("Xerox AltaLink C8045; SS 100.002…")."""
    if model and ";" in model:
        model = model.split(";", 1)[0].strip()
    return model or None


def supply_state(level, percent):
    if level is None:
        return "unknown"
    if level == -1:
        return "unrestricted"
    if level == -2:
        return "unknown"
    if level == -3:
        return "some-remaining"
    if level == 0:
        return "empty"
    if percent is not None and percent < LOW_PERCENT:
        return "low"
    return "ok"


def build_supplies(rows, colorants):
    """rows: {index: {column: value}} of prtMarkerSuppliesTable; colorants: {index: name}."""
    out = []
    for idx in sorted(rows):
        r = rows[idx]
        mx = integer(r.get(8))
        lv = integer(r.get(9))
        tcode = integer(r.get(5))
        kind = SUPPLY_KINDS.get(tcode, "other")
        if tcode == 3 and r.get(6) and "ink" in (text(r.get(6)) or "").lower():
            kind = "ink"
        level = lv if lv is not None and lv >= 0 else None
        maxc = mx if mx is not None and mx > 0 else None
        percent = None
        if level is not None and maxc:
            percent = min(100, level * 100 // maxc)
        out.append({
            "index": idx,
            "kind": kind,
            "type_code": tcode,
            "color": colorants.get(integer(r.get(3))),
            "description": text(r.get(6)),
            "unit": SUPPLY_UNITS.get(integer(r.get(7))),
            "max": maxc,
            "level": level,
            "percent": percent,
            "state": supply_state(lv, percent),
        })
    return out


def decode_errors(value):
    if not isinstance(value, (bytes, bytearray)) or not value:
        return []
    out = []
    for i, name in enumerate(ERROR_BITS):
        byte = i // 8
        if byte < len(value) and value[byte] & (0x80 >> (i % 8)):
            out.append(name)
    return out


def _table(pairs, root):
    """Walk results under root -> {row index (last arc as int or dotted rest): {column: value}}."""
    rows = {}
    plen = len(root) + 1
    for oid, value in pairs:
        rest = oid[plen:]
        col, _, idx = rest.partition(".")
        if not col.isdigit():
            continue
        # Supplies are indexed hrDeviceIndex.prtMarkerSuppliesIndex: keep the last arc.
        key = idx.rsplit(".", 1)[-1]
        key = int(key) if key.isdigit() else idx
        rows.setdefault(key, {})[int(col)] = value
    return rows


class Collector:
    """Reads records over SNMP with a shared client; one instance per scan."""

    def __init__(self, client, community=b"public", version="2c"):
        self.client = client
        self.community = community
        self.version = version

    async def _get(self, host, port, oids):
        got = await self.client.get(host, oids, community=self.community, version=self.version, port=port)
        return dict(got)

    async def _walk(self, host, port, root):
        return await self.client.walk(host, root, community=self.community, version=self.version,
                                      port=port, max_rows=512)

    async def probe(self, host, port):
        """One small GET: does anything speak SNMP here? Returns the system values or None."""
        try:
            return await self._get(host, port, [SYS_DESCR, SYS_OBJECT_ID])
        except snmp.Timeout:
            return None

    async def is_printer(self, host, port, sys_object_id):
        nxt = await self.client.getnext(host, [PRINTER_MIB], community=self.community,
                                        version=self.version, port=port)
        if nxt and nxt[0][0].startswith(PRINTER_MIB + ".") and not ber.is_exception(nxt[0][1]):
            return True
        # Without the Printer-MIB, only a printer vendor's own agent with an hrDevicePrinter counts:
        # a Windows server lists its print queues as hrDevicePrinter too.
        if manufacturer_of(sys_object_id, None) is None:
            return False
        for _, v in await self._walk(host, port, HR_DEVICE_TYPE):
            if v == HR_DEVICE_PRINTER:
                return True
        return False

    async def collect(self, host, port=161, scan="full"):
        """The full record of the printer at host:port, or None when it is no printer / silent."""
        first = await self.probe(host, port)
        if not first:
            return None
        oid = first.get(SYS_OBJECT_ID)
        sys_object_id = oid if isinstance(oid, str) else None
        if not await self.is_printer(host, port, sys_object_id):
            return None
        g = await self._get(host, port, [SYS_UPTIME, SYS_CONTACT, SYS_NAME, SYS_LOCATION, PRT_SERIAL,
                                         PRT_LIFE_COUNT, PRT_MARK_TECH, PRT_COLORANTS])
        hr = _table(await self._walk(host, port, "1.3.6.1.2.1.25.3.2.1"), "1.3.6.1.2.1.25.3.2.1")
        printer_idx = None
        for idx in sorted(k for k in hr if isinstance(k, int)):
            if hr[idx].get(2) == HR_DEVICE_PRINTER:
                printer_idx = idx
                break
        status = {"device": None, "printer": None, "errors": [], "display": [], "alerts": []}
        model = None
        if printer_idx is not None:
            model = clean_model(text(hr[printer_idx].get(3)))
            status["device"] = DEVICE_STATUS.get(integer(hr[printer_idx].get(5)), "unknown")
            p = await self._get(host, port, [HR_PRINTER_STATUS + str(printer_idx),
                                             HR_PRINTER_ERRORS + str(printer_idx)])
            status["printer"] = PRINTER_STATUS.get(integer(p.get(HR_PRINTER_STATUS + str(printer_idx))), "unknown")
            status["errors"] = decode_errors(p.get(HR_PRINTER_ERRORS + str(printer_idx)))
        descr = text(first.get(SYS_DESCR))
        supplies_rows = _table(await self._walk(host, port, PRT_SUPPLIES), PRT_SUPPLIES)
        colorant_pairs = await self._walk(host, port, PRT_COLORANT_VALUE)
        colorants = {}
        for o, v in colorant_pairs:
            last = o.rsplit(".", 1)[-1]
            if last.isdigit():
                colorants[int(last)] = text(v)
        supplies = build_supplies(supplies_rows, colorants)
        mac = None
        for _, v in await self._walk(host, port, IF_PHYS_ADDRESS):
            if isinstance(v, (bytes, bytearray)) and len(v) == 6 and any(v):
                mac = ":".join("%02x" % b for b in v)
                break
        counters = {}
        total = integer(g.get(PRT_LIFE_COUNT))
        if total is not None and total >= 0:
            counters["total"] = total
        uptime = integer(g.get(SYS_UPTIME))
        colorants_n = integer(g.get(PRT_COLORANTS))
        colour = None
        if colorants_n is not None:
            colour = colorants_n > 1
        elif supplies:
            colour = any(s["color"] not in (None, "black") for s in supplies)
        return {
            "ip": host,
            "port": port,
            "mac": mac,
            "hostname": text(g.get(SYS_NAME)),
            "manufacturer": manufacturer_of(sys_object_id, descr),
            "model": model or clean_model(descr),
            "serial": text(g.get(PRT_SERIAL)),
            "firmware": None,
            "location": text(g.get(SYS_LOCATION)),
            "contact": text(g.get(SYS_CONTACT)),
            "sys_object_id": sys_object_id,
            "sys_descr": descr,
            "uptime_s": uptime // 100 if uptime is not None else None,
            "typology": "unknown",
            "technology": MARK_TECH.get(integer(g.get(PRT_MARK_TECH)), "unknown"),
            "color": colour,
            "duplex": None,
            "install_date": None,
            "counters": counters,
            "supplies": supplies,
            "status": status,
            "collected_at": time_s(),
            "scan": scan,
            "snmp_version": self.version,
        }


async def sweep(client, addresses, on_record, community=b"public", version="2c", workers=32):
    """Collect every printer among `addresses` (an iterator of (ip, port)), calling on_record(rec).

    A fixed pool of workers pulls from the iterator, so memory does not grow with the
    range. Returns (probed, found).
    """
    col = Collector(client, community, version)
    it = iter(addresses)
    counts = [0, 0]

    async def worker():
        for host, p in it:
            counts[0] += 1
            try:
                rec = await col.collect(host, p)
            except snmp.Timeout:
                rec = None
            except (snmp.SnmpError, ber.BERError) as e:
                print("collector: %s:%d answered badly: %s" % (host, p, e))
                rec = None
            except Exception as e:  # noqa: BLE001  one device's surprise must not stop the sweep
                print("collector: %s:%d failed: %s %s" % (host, p, type(e).__name__, e))
                rec = None
            if rec is not None:
                counts[1] += 1
                on_record(rec)

    await asyncio.gather(*[worker() for _ in range(workers)])
    return counts[0], counts[1]
