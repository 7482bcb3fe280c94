"""MIB constants and value helpers shared by the recordings, the printer physics and the
live agents: kept apart so that the numbers of RFC 2790 / RFC 3805 are written once."""
from __future__ import annotations

import ipaddress

from simulator.site.errors import SiteError

SYS = (1, 3, 6, 1, 2, 1, 1)
IF_NUMBER = (1, 3, 6, 1, 2, 1, 2, 1, 0)
IF_ENTRY = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IP_ADDR_ENTRY = (1, 3, 6, 1, 2, 1, 4, 20, 1)
HR_SYSTEM_UPTIME = (1, 3, 6, 1, 2, 1, 25, 1, 1, 0)
HR_DEVICE_TYPES_ROOT = (1, 3, 6, 1, 2, 1, 25, 3, 1)
HR_DEVICE_ENTRY = (1, 3, 6, 1, 2, 1, 25, 3, 2, 1)
HR_PRINTER_ENTRY = (1, 3, 6, 1, 2, 1, 25, 3, 5, 1)
PRT = (1, 3, 6, 1, 2, 1, 43)
PRT_GENERAL_ENTRY = PRT + (5, 1, 1)
PRT_MARKER_ENTRY = PRT + (10, 2, 1)
PRT_SUPPLIES_ENTRY = PRT + (11, 1, 1)
PRT_COLORANT_ENTRY = PRT + (12, 1, 1)
PRT_MEDIA_PATH_ENTRY = PRT + (13, 4, 1)
PRT_CONSOLE_DISPLAY_ENTRY = PRT + (16, 5, 1)
PRT_ALERT_ENTRY = PRT + (18, 1, 1)

OID_SYS_DESCR = "1.3.6.1.2.1.1.1.0"
OID_SERIAL = "1.3.6.1.2.1.43.5.1.1.17.1"
OID_LIFE_COUNT = "1.3.6.1.2.1.43.10.2.1.4.1.1"

HR_DEVICE_TYPES = {
    "other": 1, "unknown": 2, "processor": 3, "network": 4, "printer": 5, "disk": 6,
    "video": 10, "audio": 11, "coprocessor": 12, "keyboard": 13, "modem": 14,
    "parallel": 15, "pointing": 16, "serial": 17, "tape": 18, "clock": 19,
    "volatile-memory": 20, "nonvolatile-memory": 21,
}

# hrPrinterDetectedErrorState bit names (RFC 2790 / RFC 3805), bit 0 = MSB of octet 1.
HR_ERROR_BITS = [
    "lowPaper", "noPaper", "lowToner", "noToner", "doorOpen", "jammed", "offline",
    "serviceRequested", "inputTrayMissing", "outputTrayMissing", "markerSupplyMissing",
    "outputNearFull", "outputFull", "inputTrayEmpty", "overduePreventMaint",
]
# errors that stop the printer (hrDeviceStatus down) vs. those that only warn
STOPPING_ERRORS = {"noPaper", "noToner", "doorOpen", "jammed", "offline", "markerSupplyMissing", "outputFull"}

MARK_TECH = {"led": 3, "laser": 4, "electrophotographic": 5, "impact": 6, "inkjet": 12,
             "solid-ink": 13, "thermal": 16}

SUPPLY_TYPES = {
    "other": 1, "unknown": 2, "toner": 3, "wasteToner": 4, "ink": 5, "inkCartridge": 6,
    "inkRibbon": 7, "wasteInk": 8, "opc": 9, "drum": 9, "developer": 10, "fuserOil": 11,
    "solidWax": 12, "ribbonWax": 13, "wasteWax": 14, "fuser": 15, "coronaWire": 16,
    "fuserOilWick": 17, "cleanerUnit": 18, "fuserCleaningPad": 19, "transferUnit": 20,
    "tonerCartridge": 21, "fuserOiler": 22, "water": 23, "wasteWater": 24,
    "glueWaterAdditive": 25, "wastePaper": 26, "bindingSupply": 27, "bandingSupply": 28,
    "stitchingWire": 29, "shrinkWrap": 30, "paperWrap": 31, "staples": 32, "inserts": 33,
    "covers": 34,
}
WASTE_TYPES = {4, 8, 14, 24, 26}
TONER_TYPES = {3, 21}
INK_TYPES = {5, 6}
SUPPLY_UNITS = {
    "tenThousandthsOfInches": 3, "micrometers": 4, "impressions": 7, "sheets": 8,
    "hours": 11, "thousandthsOfOunces": 12, "tenthsOfGrams": 13,
    "hundrethsOfFluidOunces": 14, "tenthsOfMilliliters": 15, "feet": 16, "meters": 17,
    "items": 18, "percent": 19,
}
SUPPLY_CLASSES = {"other": 1, "consumed": 3, "filled": 4}
COLOR_COLORANTS = {"cyan", "magenta", "yellow", "light cyan", "light magenta", "red",
                   "green", "blue", "orange", "violet"}

# fault-injected error -> (severity, group, code, description) for the alert table
ERROR_ALERTS = {
    "jammed": (3, 13, 8, "Paper jam"),
    "doorOpen": (3, 6, 3, "Cover open"),
    "noPaper": (3, 8, 808, "Tray 2 empty"),
    "lowPaper": (4, 8, 807, "Tray 2 low"),
    "offline": (4, 5, 1, "Offline"),
    "serviceRequested": (4, 5, 1, "Service requested"),
    "inputTrayMissing": (3, 8, 801, "Tray 2 missing"),
    "outputNearFull": (4, 9, 1, "Output bin nearly full"),
    "outputFull": (3, 9, 1, "Output bin full"),
    "overduePreventMaint": (4, 5, 1, "Maintenance overdue"),
}

FAULT_KINDS = {"down", "up", "slow", "unreachable", "lossy", "clear"} | set(HR_ERROR_BITS)


def parse_oid(text: str | tuple | list) -> tuple[int, ...]:
    if isinstance(text, (tuple, list)):
        return tuple(int(x) for x in text)
    text = str(text).strip().lstrip(".")
    try:
        return tuple(int(x) for x in text.split("."))
    except ValueError as exc:
        raise SiteError(f"bad OID {text!r}") from exc


def oid_text(oid) -> str:
    return ".".join(str(x) for x in oid)


def lookup_code(table: dict, value, what: str) -> int:
    """A YAML name (or a plain number) as its MIB enumeration value."""
    if isinstance(value, int):
        return value
    if value in table:
        return table[value]
    raise SiteError(f"unknown {what} {value!r}; known: {', '.join(sorted(map(str, table)))}")


def mac_bytes(mac: str | None, address: str) -> bytes:
    if not mac:
        # locally administered, derived from the address
        return bytes([0x02, 0xFB]) + ipaddress.IPv4Address(address).packed
    raw = bytes.fromhex(mac.replace(":", "").replace("-", "").replace(".", ""))
    if len(raw) != 6:
        raise SiteError(f"bad MAC address {mac!r}")
    return raw


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)
