"""The MIB a dynamic device serves, computed from its live state: SNMPv2-MIB system,
IF-MIB, IP-MIB, HOST-RESOURCES-MIB and, for a printer, the Printer-MIB tables a
collector reads. Apart from the state so the OID layout can be read in one place."""
from __future__ import annotations

from typing import Any

from simulator.site.errors import SiteError
from simulator.site.mib import (ERROR_ALERTS, HR_DEVICE_ENTRY, HR_DEVICE_TYPES_ROOT,
                                HR_ERROR_BITS, HR_PRINTER_ENTRY, HR_SYSTEM_UPTIME, IF_ENTRY,
                                IF_NUMBER, INK_TYPES, IP_ADDR_ENTRY, PRT_ALERT_ENTRY,
                                PRT_COLORANT_ENTRY, PRT_CONSOLE_DISPLAY_ENTRY,
                                PRT_GENERAL_ENTRY, PRT_MARKER_ENTRY, PRT_MEDIA_PATH_ENTRY,
                                PRT_SUPPLIES_ENTRY, STOPPING_ERRORS, SYS, parse_oid)


class AlertTable:
    """prtAlertTable rows keep their index while their condition lasts, as on a real
    printer; a condition that ends frees its row and a new one gets a fresh index."""

    def __init__(self):
        self.rows: dict[tuple, tuple[int, int, int]] = {}   # key -> (index, since, code)
        self.next_index = 1

    def update(self, conditions: dict, up: int) -> dict:
        for key in list(self.rows):
            if key not in conditions or self.rows[key][2] != conditions[key][3]:
                del self.rows[key]
        for key in conditions:
            if key not in self.rows:
                self.rows[key] = (self.next_index, up, conditions[key][3])
                self.next_index += 1
        return self.rows


def build_mib(live, now: float) -> dict:
    """{oid tuple: pysnmp value} for everything the device answers at `now`."""
    from pysnmp.proto import rfc1902 as T

    mib: dict[tuple, Any] = {}
    up = live.uptime_ticks(now)
    st = live.state(now)
    _system(mib, live, up, T)
    _interfaces(mib, live, live.clock.elapsed(now), T)
    _host_resources(mib, live, st, up, T)
    if live.printer is not None:
        _printer(mib, live, st, up, T)
    for oid, typ, value in live.extra:
        mib[oid] = extra_value(live, typ, value, st, T)
    return mib


def _system(mib: dict, live, up: int, T):
    """SNMPv2-MIB system group."""
    mib[SYS + (1, 0)] = T.OctetString(live.sys_descr)
    mib[SYS + (2, 0)] = T.ObjectIdentifier(live.sys_object_id)
    mib[SYS + (3, 0)] = T.TimeTicks(up)
    mib[SYS + (4, 0)] = T.OctetString(live.contact)
    mib[SYS + (5, 0)] = T.OctetString(live.sys_name)
    mib[SYS + (6, 0)] = T.OctetString(live.location)
    mib[SYS + (7, 0)] = T.Integer32(72)


def _interfaces(mib: dict, live, elapsed: float, T):
    """IF-MIB with one ethernet interface, and IP-MIB's row for the address it answers on."""
    printer = live.printer is not None
    mib[IF_NUMBER] = T.Integer32(1)
    for col, v in ((1, T.Integer32(1)), (2, T.OctetString("eth0" if not printer else "Ethernet")),
                   (3, T.Integer32(6)), (4, T.Integer32(1500)), (5, T.Gauge32(1000000000)),
                   (6, T.OctetString(live.mac)), (7, T.Integer32(1)), (8, T.Integer32(1)),
                   (9, T.TimeTicks(0)),
                   (10, T.Counter32(int(elapsed * 2300 + 1000000) & 0xFFFFFFFF)),
                   (16, T.Counter32(int(elapsed * 900 + 400000) & 0xFFFFFFFF))):
        mib[IF_ENTRY + (col, 1)] = v
    address = live.device.address
    ip = tuple(int(x) for x in address.split("."))
    mib[IP_ADDR_ENTRY + (1,) + ip] = T.IpAddress(address)
    mib[IP_ADDR_ENTRY + (2,) + ip] = T.Integer32(1)
    mib[IP_ADDR_ENTRY + (3,) + ip] = T.IpAddress("255.255.255.0")


def _host_resources(mib: dict, live, st: dict, up: int, T):
    """HOST-RESOURCES-MIB: the device table, and hrPrinterTable for printer rows."""
    printer = live.printer is not None
    mib[HR_SYSTEM_UPTIME] = T.TimeTicks(up)
    hr_rows: list[tuple[int, str, int]] = []   # (type, descr, status)
    if printer:
        errors = st["errors"]
        if errors & STOPPING_ERRORS:
            dev_status = 5
        elif errors:
            dev_status = 3
        else:
            dev_status = 2
        hr_rows.append((5, live.hr_printer_descr, dev_status))
        hr_rows.append((4, "Network interface", 2))
    for t, descr in live.hr_devices:
        hr_rows.append((t, descr, 2))
    for i, (t, descr, status) in enumerate(hr_rows, start=1):
        mib[HR_DEVICE_ENTRY + (1, i)] = T.Integer32(i)
        mib[HR_DEVICE_ENTRY + (2, i)] = T.ObjectIdentifier(HR_DEVICE_TYPES_ROOT + (t,))
        mib[HR_DEVICE_ENTRY + (3, i)] = T.OctetString(descr)
        mib[HR_DEVICE_ENTRY + (4, i)] = T.ObjectIdentifier((0, 0))
        mib[HR_DEVICE_ENTRY + (5, i)] = T.Integer32(status)
        mib[HR_DEVICE_ENTRY + (6, i)] = T.Counter32(0)
        if t == 5:
            if printer and i == 1:
                pstatus, estate = _printer_status(live, st["errors"])
            else:
                pstatus, estate = 3, b"\x00"
            mib[HR_PRINTER_ENTRY + (1, i)] = T.Integer32(pstatus)
            mib[HR_PRINTER_ENTRY + (2, i)] = T.OctetString(estate)


def _printer_status(live, errors: set) -> tuple[int, bytes]:
    """(hrPrinterStatus, hrPrinterDetectedErrorState octets)."""
    if errors & STOPPING_ERRORS:
        pstatus = 1  # other
    elif live.rate > 0 and not live.down:
        pstatus = 4  # printing
    else:
        pstatus = 3  # idle
    bits = 0
    for e in errors:
        bits |= 1 << (15 - HR_ERROR_BITS.index(e))
    return pstatus, bits.to_bytes(2, "big")


def _printer(mib: dict, live, st: dict, up: int, T):
    """Printer-MIB: general, marker, supplies, colorants, media path, alerts, console."""
    total = st["total"] & 0xFFFFFFFF
    g = PRT_GENERAL_ENTRY
    mib[g + (1, 1)] = T.Counter32(0)                       # prtGeneralConfigChanges
    mib[g + (2, 1)] = T.Integer32(1)                       # prtGeneralCurrentLocalization
    mib[g + (3, 1)] = T.Integer32(3)                       # prtGeneralReset notResetting
    mib[g + (16, 1)] = T.OctetString(live.hr_printer_descr)  # prtGeneralPrinterName
    if live.serial is not None and live.serial_oid:
        mib[g + (17, 1)] = T.OctetString(str(live.serial))  # prtGeneralSerialNumber
    m = PRT_MARKER_ENTRY
    for col, v in ((2, T.Integer32(live.mark_tech)), (3, T.Integer32(7)),
                   (4, T.Counter32(total)), (5, T.Counter32(st["pages"] & 0xFFFFFFFF)),
                   (6, T.Integer32(live.process_colorants)), (7, T.Integer32(0)),
                   (8, T.Integer32(3)), (9, T.Integer32(600)), (10, T.Integer32(600)),
                   (14, T.Integer32(0))):
        if col == 4 and not live.life_count_oid:
            continue
        mib[m + (col, 1, 1)] = v
    _supplies(mib, live, st["levels"], T)
    mp = PRT_MEDIA_PATH_ENTRY
    mib[mp + (9, 1, 1)] = T.Integer32(3 if live.duplex else 5)  # longEdgeBindingDuplex | simplex
    conditions = _alert_conditions(live, st)
    _alerts(mib, live.alerts.update(conditions, up), conditions, T)
    if live.console:
        line = str(live.console)
    elif conditions:
        worst = min(conditions.values(), key=lambda c: c[0])
        line = worst[4]
    else:
        line = "Printing" if live.rate > 0 else "Ready"
    mib[PRT_CONSOLE_DISPLAY_ENTRY + (2, 1, 1)] = T.OctetString(line)


def _supplies(mib: dict, live, levels: list[int], T):
    s = PRT_SUPPLIES_ENTRY
    for sup, lvl in zip(live.supplies, levels):
        i = sup.index
        mib[s + (2, 1, i)] = T.Integer32(1)
        mib[s + (3, 1, i)] = T.Integer32(sup.colorant_index)
        mib[s + (4, 1, i)] = T.Integer32(sup.class_code)
        mib[s + (5, 1, i)] = T.Integer32(sup.type_code)
        mib[s + (6, 1, i)] = T.OctetString(sup.description)
        mib[s + (7, 1, i)] = T.Integer32(sup.unit_code)
        mib[s + (8, 1, i)] = T.Integer32(sup.max)
        mib[s + (9, 1, i)] = T.Integer32(lvl)
    c = PRT_COLORANT_ENTRY
    for i, name in enumerate(live.colorants, start=1):
        mib[c + (2, 1, i)] = T.Integer32(1)
        mib[c + (3, 1, i)] = T.Integer32(3)      # process
        mib[c + (4, 1, i)] = T.OctetString(name)
        mib[c + (5, 1, i)] = T.Integer32(256)


def _alert_conditions(live, st: dict) -> dict:
    """{condition key: (severity, group, group index, code, text)} that stand now."""
    conditions = {}
    for sup, lvl in zip(live.supplies, st["levels"]):
        if sup.max <= 0 or lvl < 0:
            continue
        ink = sup.type_code in INK_TYPES
        if sup.is_marking:
            if lvl == 0:
                conditions[("supply", sup.index)] = (3, 11, sup.index, 1102 if ink else 1101,
                                                    f"{sup.description} empty")
            elif lvl * 10 < sup.max:
                conditions[("supply", sup.index)] = (4, 11, sup.index, 1105 if ink else 1104,
                                                    f"{sup.description} low")
        elif sup.class_code == 4 and lvl * 10 >= sup.max * 9:
            conditions[("supply", sup.index)] = (4, 11, sup.index, 1108 if ink else 1107,
                                                f"{sup.description} nearly full")
    for e in sorted(st["errors"]):
        if e in ERROR_ALERTS:
            sev, group, code, text = ERROR_ALERTS[e]
            conditions[("error", e)] = (sev, group, 1, code, text)
    return conditions


def _alerts(mib: dict, rows: dict, conditions: dict, T):
    a = PRT_ALERT_ENTRY
    for key, (idx, when, _) in rows.items():
        sev, group, gidx, code, text = conditions[key]
        mib[a + (2, 1, idx)] = T.Integer32(sev)
        mib[a + (3, 1, idx)] = T.Integer32(3)     # untrained
        mib[a + (4, 1, idx)] = T.Integer32(group)
        mib[a + (5, 1, idx)] = T.Integer32(gidx)
        mib[a + (6, 1, idx)] = T.Integer32(-1)
        mib[a + (7, 1, idx)] = T.Integer32(code)
        mib[a + (8, 1, idx)] = T.OctetString(text)
        mib[a + (9, 1, idx)] = T.TimeTicks(when)


def _template_value(live, value: str, st: dict):
    """An extra OID's ``@name`` value, taken from the live counters."""
    key = value[1:]
    if key == "total":
        return st.get("total", 0)
    if key == "pages":
        return st["pages"]
    if key == "color":
        return st["color_pages"]
    if key == "mono":
        return st["pages"] - st["color_pages"] + (live.life0 if live.printer else 0)
    if key == "serial":
        return live.serial or ""
    raise SiteError(f"{live.device.name}: unknown template {value!r}")


def extra_value(live, typ: str, value, st: dict, T):
    """A site.yaml ``extra`` entry (vendor OIDs) as the pysnmp value of its type."""
    if isinstance(value, str) and value.startswith("@"):
        value = _template_value(live, value, st)
    t = typ.lower()
    if t in ("int", "integer", "integer32"):
        return T.Integer32(int(value))
    if t in ("counter", "counter32"):
        return T.Counter32(int(value) & 0xFFFFFFFF)
    if t == "counter64":
        return T.Counter64(int(value))
    if t in ("gauge", "gauge32", "unsigned32"):
        return T.Gauge32(int(value))
    if t == "timeticks":
        return T.TimeTicks(int(value))
    if t in ("str", "string", "octets"):
        return T.OctetString(str(value))
    if t == "hex":
        return T.OctetString(hexValue=str(value).replace(":", "").replace(" ", ""))
    if t in ("oid", "objectidentifier"):
        return T.ObjectIdentifier(parse_oid(value))
    if t in ("ip", "ipaddress"):
        return T.IpAddress(str(value))
    raise SiteError(f"{live.device.name}: unknown extra type {typ!r}")

