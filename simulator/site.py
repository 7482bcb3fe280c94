"""The simulated customer site: printers and non-printers as real SNMP agents on loopback.

A site is described declaratively in YAML (default: ``simulator/site.yaml``). Each
device listens on its own loopback address (127.x.y.z) and UDP port and is either

* ``kind: dynamic`` -- a pysnmp agent (asyncio, one SnmpEngine per device, all in one
  background thread) serving a MIB computed live from the device's state: page
  counters advance with wall time and consumables run down in proportion; or
* ``kind: recording`` -- a real SNMP walk (``.snmprec``) replayed by snmpsim. All
  recorded devices share ONE snmpsim process: one SNMP engine per device, each with
  its own data directory and endpoint, so every device answers the same community.

Usage::

    from simulator.site import Site
    with Site.from_yaml(port_override=16161) as site:   # start() on enter, stop() on exit
        for rec in site.truth():                         # what the printers serve right now
            ...
        site.set_fault("hp-m404dn", "down")              # stop answering
        site.set_fault("hp-m404dn", "up")

Humans: ``python -m simulator.site [--port N]`` runs the site until Ctrl-C.

Schema of the YAML file (top level)::

    network: 127.31.0.0/24        # optional: every address must be inside it
    defaults: {port: 161, community: public}
    speed: 1.0                    # multiplies every dynamic printer's pages_per_second
    devices: [ ... ]

Device keys (all kinds): ``name``, ``address``, ``port``, ``community``, ``kind``,
``extra_agent_port`` (Canon's second agent: see simulator/canon47545.py).

``kind: recording``: ``recording`` (path relative to $FLEETBOX_WALKS, default
``../shared/printer-walks`` next to the repository), ``printer`` (bool),
``manufacturer``, ``model``; optional ``serial`` / ``serial_source`` and ``total`` /
``total_source`` when the recording only has them in a vendor MIB.

``kind: dynamic``: ``manufacturer``, ``model``, ``serial``, ``sys_descr``,
``sys_object_id``, ``sys_name``, ``location``, ``contact``, ``mac``, ``hr_devices``
(list of ``{type, descr}``; ``type`` one of :data:`HR_DEVICE_TYPES`), ``extra`` (list of
``{oid, type, value}``, value may be ``@total``, ``@pages``, ``@color``, ``@mono``,
``@serial``), optional ``v3`` (``{user, auth, auth_key, priv, priv_key}``) and, for a
printer, a ``printer`` mapping:

    hr_device_descr, technology (laser|led|inkjet|solid-ink|thermal|impact|<int>),
    duplex, life_count, life_count_oid (false: no prtMarkerLifeCount), serial_oid (false: no
    prtGeneralSerialNumber), pages_per_second, color_ratio (share of colour pages),
    errors (static hrPrinterDetectedErrorState names), console (display text),
    supplies: [{description, type, colorant, unit, max, level, yield, class, uses, replace}]

A dynamic printer with ``web: {style: hp-ews|brother|kyocera-ccrx|ricoh-wim}`` also serves its embedded web
page, showing the live total, on its address (ports 80/443, or ``Site(web_ports=...)``;
see simulator/webpages.py).

A supply with a ``yield`` (pages that take it from ``max`` to empty) runs down (or, for
a receptacle such as waste toner, fills up) as pages are printed; ``uses`` is ``all``
(every page) or ``color`` (colour pages only; the default for cyan/magenta/yellow).
When it is exhausted it is replaced (back to ``max``) unless ``replace: false``.
"""
from __future__ import annotations

import argparse
import asyncio
import atexit
import bisect
import errno
import functools
import grp
import ipaddress
import math
import os
import pwd
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Site", "Device", "SiteError", "snmp_get", "parse_snmprec", "walks_dir"]

HERE = Path(__file__).resolve().parent
DEFAULT_SITE_YAML = HERE / "site.yaml"
REPO_ROOT = HERE.parent
DEFAULT_WALKS = REPO_ROOT.parent / "shared" / "printer-walks"

READY_TIMEOUT = 30.0


class SiteError(RuntimeError):
    """A site could not be described, started or driven."""


def walks_dir() -> Path:
    """Folder of the real printer recordings ($FLEETBOX_WALKS or ../shared/printer-walks)."""
    env = os.environ.get("FLEETBOX_WALKS")
    return Path(env) if env else DEFAULT_WALKS


# --------------------------------------------------------------------------- MIB constants

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


def _oid(text: str | tuple | list) -> tuple[int, ...]:
    if isinstance(text, (tuple, list)):
        return tuple(int(x) for x in text)
    text = str(text).strip().lstrip(".")
    try:
        return tuple(int(x) for x in text.split("."))
    except ValueError as exc:
        raise SiteError(f"bad OID {text!r}") from exc


def _oid_str(oid) -> str:
    return ".".join(str(x) for x in oid)


def _lookup(table: dict, value, what: str) -> int:
    if isinstance(value, int):
        return value
    if value in table:
        return table[value]
    raise SiteError(f"unknown {what} {value!r}; known: {', '.join(sorted(map(str, table)))}")


def _mac_bytes(mac: str | None, address: str) -> bytes:
    if not mac:
        # locally administered, derived from the address
        return bytes([0x02, 0xFB]) + ipaddress.IPv4Address(address).packed
    raw = bytes.fromhex(mac.replace(":", "").replace("-", "").replace(".", ""))
    if len(raw) != 6:
        raise SiteError(f"bad MAC address {mac!r}")
    return raw


def _fmt_mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


# ------------------------------------------------------------------------- site model

class Device:
    """One device of the site. Attributes: name, address, port, community, kind, is_printer,
    manufacturer, model (and spec: the YAML mapping)."""

    def __init__(self, spec: dict, defaults: dict, port_override: int | None, speed: float):
        self.spec = spec
        try:
            self.name: str = str(spec["name"])
            self.address: str = str(spec["address"])
            self.kind: str = str(spec["kind"])
        except KeyError as exc:
            raise SiteError(f"device {spec!r} lacks {exc.args[0]!r}") from None
        self.port: int = int(port_override if port_override is not None
                             else spec.get("port", defaults.get("port", 161)))
        self.community: str = str(spec.get("community", defaults.get("community", "public")))
        self.manufacturer: str | None = spec.get("manufacturer")
        self.model: str | None = spec.get("model")
        try:
            ip = ipaddress.IPv4Address(self.address)
        except ValueError:
            raise SiteError(f"device {self.name}: bad address {self.address!r}") from None
        if ip not in ipaddress.IPv4Network("127.0.0.0/8"):
            raise SiteError(f"device {self.name}: {self.address} is not a loopback address (127.0.0.0/8)")
        if not 0 < self.port < 65536:
            raise SiteError(f"device {self.name}: bad port {self.port}")
        if not self.community or any(c in self.community for c in "/\\\0") or self.community.startswith("."):
            raise SiteError(f"device {self.name}: unusable community {self.community!r}")
        self.live: LiveDevice | None = None
        self.web = None            # simulator.webpages.PrinterWeb while the site runs
        self.recording: Path | None = None
        if spec.get("web") is not None and not (self.kind == "dynamic" and spec.get("printer")):
            raise SiteError(f"device {self.name}: 'web' is for dynamic printers")
        if self.kind == "dynamic":
            self.is_printer = bool(spec.get("printer"))
            self.live = LiveDevice(self, speed)
        elif self.kind == "recording":
            if "printer" not in spec:
                raise SiteError(f"device {self.name}: a recording must say printer: true|false")
            self.is_printer = bool(spec["printer"])
            rec = spec.get("recording")
            if not rec:
                raise SiteError(f"device {self.name}: kind recording needs 'recording'")
            path = Path(rec)
            if not path.is_absolute():
                path = walks_dir() / path
            if not path.is_file():
                raise SiteError(f"device {self.name}: recording {path} not found "
                                f"(set FLEETBOX_WALKS to the printer-walks folder)")
            self.recording = path
        else:
            raise SiteError(f"device {self.name}: unknown kind {self.kind!r} (dynamic|recording)")
        self._records: dict | None = None
        self._served: Path | None = None

    def __repr__(self):
        return (f"Device({self.name!r}, {self.address}:{self.port}, {self.kind}, "
                f"printer={self.is_printer})")

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.address, self.port)

    # ---- truth
    def records(self) -> dict:
        if self._records is None:
            assert self.recording is not None
            self._records = parse_snmprec(self.served_recording())
        return self._records

    def served_recording(self) -> Path:
        """The recording as served at this device's address (readdress_snmprec), in a
        temporary file made once."""
        if self._served is None:
            text = Path(self.recording).read_text(encoding="utf-8", errors="surrogateescape")
            fd, name = tempfile.mkstemp(prefix="fleetbox-rec-", suffix=".snmprec")
            with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write(readdress_snmprec(text, self.address))
            atexit.register(_unlink_quietly, name)
            self._served = Path(name)
        return self._served

    def truth(self) -> dict:
        if self.live is not None:
            return self.live.truth()
        return self._recording_truth()

    def _recording_truth(self) -> dict:
        recs = self.records()

        def val(oid):
            r = recs.get(_oid(oid))
            return None if r is None else r[1]

        serial = val(OID_SERIAL)
        serial_source = "prtGeneralSerialNumber" if serial is not None else None
        if isinstance(serial, bytes):
            serial = _text(serial)
        if serial is not None:
            serial = serial.strip() or None
        if serial is None and self.spec.get("serial") is not None:
            serial = str(self.spec["serial"])
            serial_source = self.spec.get("serial_source", "site.yaml")
        total = val(OID_LIFE_COUNT)
        total_source = "prtMarkerLifeCount" if total is not None else None
        if total is None and self.spec.get("total") is not None:
            total = int(self.spec["total"])
            total_source = self.spec.get("total_source", "site.yaml")
        colorants = {}
        for oid, (_, v) in recs.items():
            if oid[:len(PRT_COLORANT_ENTRY) + 1] == PRT_COLORANT_ENTRY + (4,) and len(oid) == len(PRT_COLORANT_ENTRY) + 3:
                colorants[oid[-1]] = _text(v) if isinstance(v, bytes) else str(v)
        supplies = []
        idxs = sorted({oid[-1] for oid in recs
                       if oid[:len(PRT_SUPPLIES_ENTRY)] == PRT_SUPPLIES_ENTRY
                       and len(oid) == len(PRT_SUPPLIES_ENTRY) + 3 and oid[-2] == 1})
        for i in idxs:
            def col(c):
                return val(PRT_SUPPLIES_ENTRY + (c, 1, i))
            desc = col(6)
            colorant_index = col(3)
            supplies.append({
                "index": i,
                "description": _text(desc) if isinstance(desc, bytes) else desc,
                "level": col(9),
                "max": col(8),
                "type_code": col(5),
                "unit_code": col(7),
                "color": colorants.get(colorant_index) if colorant_index else None,
            })
        return {
            "name": self.name, "kind": self.kind, "ip": self.address, "port": self.port,
            "manufacturer": self.manufacturer, "model": self.model,
            "serial": serial, "serial_source": serial_source,
            "total": total, "total_source": total_source,
            "mac": _recording_mac(recs, self.address),
            "supplies": supplies,
        }


def _text(raw: bytes) -> str:
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return raw.decode("utf-16").rstrip("\0").strip()
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("utf-8").rstrip("\0").strip()
    except UnicodeDecodeError:
        return raw.decode("latin-1").rstrip("\0").strip()


def _recording_mac(recs: dict, address: str) -> str | None:
    """The MAC a correct collector derives (spec: interface carrying the IP, else the
    first non-empty 6-byte ifPhysAddress)."""
    ip_tail = tuple(int(x) for x in address.split("."))
    r = recs.get(IP_ADDR_ENTRY + (2,) + ip_tail)
    if r is not None:
        mac = recs.get(IF_ENTRY + (6, int(r[1])))
        if mac is not None and isinstance(mac[1], bytes) and len(mac[1]) == 6:
            return _fmt_mac(mac[1])
    for oid in sorted(recs):
        if oid[:len(IF_ENTRY) + 1] == IF_ENTRY + (6,) and len(oid) == len(IF_ENTRY) + 2:
            v = recs[oid][1]
            if isinstance(v, bytes) and len(v) == 6 and any(v):
                return _fmt_mac(v)
    return None


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def readdress_snmprec(text: str, address: str) -> str:
    """The recording as its device would answer at `address`: the device's own IPv4
    address (the first in IP-MIB's ipAddrTable that is not 127.x or 0.0.0.0) becomes
    `address` there, so ipAdEntIfIndex.<address> names the interface that carries it.
    Lines stay in OID order (snmpsim answers GETNEXT from that order)."""
    prefix = ".".join(str(x) for x in IP_ADDR_ENTRY) + "."
    lines = text.splitlines()
    own = None
    for line in lines:
        oid = line.split("|", 1)[0]
        if oid.startswith(prefix + "2."):
            ip = oid[len(prefix) + 2:]
            if not ip.startswith("127.") and ip != "0.0.0.0":
                own = ip
                break
    if own is None:
        return text
    out = []
    for line in lines:
        parts = line.split("|", 2)
        oid = parts[0]
        if oid.startswith(prefix) and oid.endswith("." + own) and len(parts) == 3:
            col = oid[len(prefix):].split(".", 1)[0]
            value = address if col == "1" else parts[2]
            tag = "64" if col == "1" else parts[1]
            line = "%s%s.%s|%s|%s" % (prefix, col, address, tag, value)
        out.append(line)

    def key(line):
        try:
            return _oid(line.split("|", 1)[0])
        except SiteError:
            return ()
    return "\n".join(sorted(out, key=key)) + "\n"


def parse_snmprec(path: str | Path) -> dict[tuple[int, ...], tuple[str, Any]]:
    """Parse an snmpsim ``.snmprec`` file: {oid tuple: (type tag, python value)}.
    Strings come back as bytes, integers as int, OIDs and addresses as text."""
    out: dict[tuple[int, ...], tuple[str, Any]] = {}
    with open(path, "r", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            line = line.rstrip("\r\n")
            if not line or line.startswith("#"):
                continue
            try:
                oid, tag, value = line.split("|", 2)
            except ValueError:
                continue
            base = tag.split(":", 1)[0]
            hexed = base.endswith("x")
            base = base.rstrip("x")
            if base in ("2", "65", "66", "67", "70"):
                try:
                    v: Any = int(value) if value.strip() else 0
                except ValueError:
                    continue   # a damaged value (okilan_9450g has "6git3159"), which snmpsim cannot serve either
            elif base == "4":
                v = bytes.fromhex(value) if hexed else value.encode("utf-8", "surrogateescape")
            elif base == "64" and hexed:
                v = ".".join(str(b) for b in bytes.fromhex(value))
            else:
                v = value
            try:
                out[_oid(oid)] = (base, v)
            except SiteError:
                continue
    return out


# --------------------------------------------------------------------- live device state

class _Supply:
    def __init__(self, index: int, spec: dict, colorant_index: int, colorant: str | None):
        self.index = index
        self.description = str(spec.get("description", f"Supply {index}"))
        self.type_code = _lookup(SUPPLY_TYPES, spec.get("type", "toner"), "supply type")
        default_class = "filled" if self.type_code in WASTE_TYPES else "consumed"
        self.class_code = _lookup(SUPPLY_CLASSES, spec.get("class", default_class), "supply class")
        self.unit_code = _lookup(SUPPLY_UNITS, spec.get("unit", "percent"), "supply unit")
        self.max = int(spec.get("max", 100))
        self.level0 = int(spec.get("level", self.max))
        y = spec.get("yield")
        self.yield_pages = float(y) if y else None
        self.colorant_index = colorant_index
        self.colorant = colorant
        default_uses = "color" if (colorant or "").lower() in COLOR_COLORANTS else "all"
        self.uses = spec.get("uses", default_uses)
        if self.uses not in ("all", "color"):
            raise SiteError(f"supply {self.description!r}: uses must be all|color")
        self.replace = bool(spec.get("replace", True))

    @property
    def dynamic(self) -> bool:
        return bool(self.yield_pages) and self.max > 0 and 0 <= self.level0 <= self.max

    def level(self, pages: int, color_pages: int) -> int:
        if not self.dynamic:
            return self.level0
        p = color_pages if self.uses == "color" else pages
        used = p * self.max / self.yield_pages
        if self.class_code == 4:  # receptacle: fills up, then gets emptied
            filled = self.level0 + used
            if filled < self.max:
                return int(math.floor(filled))
            if not self.replace:
                return self.max
            return int(math.floor((filled - self.max) % self.max))
        remaining = self.level0 - used
        if remaining > 0:
            return int(math.ceil(remaining - 1e-9))
        if not self.replace:
            return 0
        over = -remaining
        return int(math.ceil(self.max - (over % self.max) - 1e-9))


class _Clock:
    """Wall-time clock that can be paused (a powered-off printer does not print)."""

    def __init__(self):
        self.acc = 0.0
        self.since: float | None = time.monotonic()

    def elapsed(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return self.acc + (now - self.since if self.since is not None else 0.0)

    def pause(self):
        if self.since is not None:
            self.acc = self.elapsed()
            self.since = None

    def resume(self):
        if self.since is None:
            self.since = time.monotonic()


class LiveDevice:
    """State and live MIB of a dynamic device."""

    def __init__(self, device: Device, speed: float):
        spec = device.spec
        self.device = device
        self.lock = threading.RLock()
        self.sys_descr = str(spec.get("sys_descr", device.model or device.name))
        self.sys_object_id = _oid(spec.get("sys_object_id", "1.3.6.1.4.1.8072.3.2.10"))
        self.sys_name = str(spec.get("sys_name", device.name))
        self.location = str(spec.get("location", ""))
        self.contact = str(spec.get("contact", ""))
        self.mac = _mac_bytes(spec.get("mac"), device.address)
        self.serial = spec.get("serial")
        self.hr_devices = []
        for d in spec.get("hr_devices") or []:
            self.hr_devices.append((_lookup(HR_DEVICE_TYPES, d.get("type", "other"), "hr device type"),
                                    str(d.get("descr", ""))))
        self.extra = []
        for e in spec.get("extra") or []:
            self.extra.append((_oid(e["oid"]), str(e.get("type", "string")), e.get("value")))
        self.v3 = spec.get("v3")
        self.printer = None
        p = spec.get("printer")
        if p:
            if not isinstance(p, dict):
                raise SiteError(f"device {device.name}: 'printer' must be a mapping for kind dynamic")
            self.printer = p
            self.hr_printer_descr = str(p.get("hr_device_descr") or
                                        " ".join(x for x in (device.manufacturer, device.model) if x))
            self.mark_tech = _lookup(MARK_TECH, p.get("technology", "laser"), "technology")
            self.duplex = bool(p.get("duplex", False))
            # false: no prtMarkerLifeCount (the total shows only on the web page, simulator/webpages.py)
            self.life_count_oid = bool(p.get("life_count_oid", True))
            self.serial_oid = bool(p.get("serial_oid", True))    # false: the serial too is only on the page
            self.life0 = int(p.get("life_count", 0))
            self.rate = float(p.get("pages_per_second", 1.0)) * float(speed)
            self.static_errors = set(p.get("errors") or [])
            for e in self.static_errors:
                if e not in HR_ERROR_BITS:
                    raise SiteError(f"device {device.name}: unknown error {e!r}")
            self.console = p.get("console")
            colorants: list[str] = []
            self.supplies: list[_Supply] = []
            for i, s in enumerate(p.get("supplies") or [], start=1):
                c = s.get("colorant")
                ci = 0
                if c:
                    c = str(c)
                    if c not in colorants:
                        colorants.append(c)
                    ci = colorants.index(c) + 1
                self.supplies.append(_Supply(i, s, ci, c))
            self.colorants = colorants
            self.process_colorants = int(p.get("process_colorants", max(1, len(colorants))))
            default_ratio = 0.3 if self.process_colorants > 1 else 0.0
            self.color_ratio = float(p.get("color_ratio", default_ratio))
        # runtime state
        self.clock = _Clock()
        self.boot = time.monotonic()
        self.extra_pages = 0
        self.down = False          # powered off: no answer, no printing
        self.unreachable = False   # no answer, keeps printing
        self.delay = 0.0           # "slow": seconds before answering
        self.loss = 0.0            # "lossy": probability of dropping a request
        self.fault_errors: set[str] = set()
        self._alerts: dict[tuple, tuple[int, int]] = {}
        self._alert_next = 1
        self._cache: tuple[float, dict, list] | None = None

    # ---- counters and levels
    def pages(self, now: float | None = None) -> tuple[int, int]:
        """(pages printed since start, colour pages among them)."""
        if not self.printer:
            return 0, 0
        p = int(math.floor(self.rate * self.clock.elapsed(now) + 1e-9)) + self.extra_pages
        return p, int(math.floor(p * self.color_ratio + 1e-9))

    def uptime_ticks(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        return int((now - self.boot) * 100) & 0xFFFFFFFF

    def state(self, now: float | None = None) -> dict:
        with self.lock:
            pages, color = self.pages(now)
            out = {"pages": pages, "color_pages": color}
            if self.printer:
                out["total"] = self.life0 + pages
                out["levels"] = [s.level(pages, color) for s in self.supplies]
                errors = set(self.static_errors) | self.fault_errors
                for s, lvl in zip(self.supplies, out["levels"]):
                    if s.class_code == 3 and s.type_code in TONER_TYPES | INK_TYPES and s.max > 0 and lvl >= 0:
                        if lvl == 0:
                            errors.add("noToner")
                        elif lvl * 10 < s.max:
                            errors.add("lowToner")
                out["errors"] = errors
            return out

    def truth(self) -> dict:
        d = self.device
        st = self.state()
        out = {"name": d.name, "kind": d.kind, "ip": d.address, "port": d.port,
               "manufacturer": d.manufacturer, "model": d.model,
               "serial": None if self.serial is None else str(self.serial),
               "serial_source": None if self.serial is None else "prtGeneralSerialNumber",
               "total": None, "total_source": None, "mac": _fmt_mac(self.mac),
               "supplies": []}
        if self.printer:
            out["total"] = st["total"] & 0xFFFFFFFF
            out["total_source"] = "prtMarkerLifeCount" if self.life_count_oid else "web"
            if self.serial is not None and not self.serial_oid:
                out["serial_source"] = "web"
            if d.web is not None:
                out["web_source"] = d.web.source
                out["web_serial_source"] = d.web.serial_source
            out["color"] = self.process_colorants > 1
            out["errors"] = sorted(st["errors"], key=HR_ERROR_BITS.index)
            out["supplies"] = [{"index": s.index, "description": s.description, "level": lvl,
                                "max": s.max, "type_code": s.type_code, "unit_code": s.unit_code,
                                "color": s.colorant}
                               for s, lvl in zip(self.supplies, st["levels"])]
        return out

    # ---- faults
    def set_fault(self, kind: str, **params):
        with self.lock:
            if kind == "down":
                if not self.down:
                    self.down = True
                    self.clock.pause()
            elif kind == "up":
                if self.down:
                    self.down = False
                    self.clock.resume()
                    self.boot = time.monotonic()     # it was powered off: uptime restarts
                self.unreachable = False
                self.delay = 0.0
                self.loss = 0.0
            elif kind == "unreachable":
                self.unreachable = True
            elif kind == "slow":
                self.delay = float(params.get("delay", 2.0))
            elif kind == "lossy":
                self.loss = float(params.get("loss", 0.5))
            elif kind == "clear":
                self.fault_errors.clear()
            elif kind in HR_ERROR_BITS:
                if not self.printer:
                    raise SiteError(f"{self.device.name} is not a printer: no {kind}")
                self.fault_errors.add(kind)
            else:
                raise SiteError(f"unknown fault {kind!r}; one of {sorted(FAULT_KINDS)}")
            self._cache = None

    def print_pages(self, n: int):
        with self.lock:
            self.extra_pages += int(n)
            self._cache = None

    # ---- MIB
    def snapshot(self) -> tuple[dict, list]:
        """Current MIB view: ({oid: pysnmp value}, sorted oids). Cached for 50 ms."""
        with self.lock:
            now = time.monotonic()
            c = self._cache
            if c is not None and now - c[0] < 0.05:
                return c[1], c[2]
            mib = self._build(now)
            keys = sorted(mib)
            self._cache = (now, mib, keys)
            return mib, keys

    def _build(self, now: float) -> dict:
        from pysnmp.proto import rfc1902 as T

        d = self.device
        mib: dict[tuple, Any] = {}
        up = self.uptime_ticks(now)
        st = self.state(now)
        printer = self.printer is not None
        # SNMPv2-MIB system group
        mib[SYS + (1, 0)] = T.OctetString(self.sys_descr)
        mib[SYS + (2, 0)] = T.ObjectIdentifier(self.sys_object_id)
        mib[SYS + (3, 0)] = T.TimeTicks(up)
        mib[SYS + (4, 0)] = T.OctetString(self.contact)
        mib[SYS + (5, 0)] = T.OctetString(self.sys_name)
        mib[SYS + (6, 0)] = T.OctetString(self.location)
        mib[SYS + (7, 0)] = T.Integer32(72)
        # IF-MIB: one ethernet interface
        elapsed = self.clock.elapsed(now)
        mib[IF_NUMBER] = T.Integer32(1)
        for col, v in ((1, T.Integer32(1)), (2, T.OctetString("eth0" if not printer else "Ethernet")),
                       (3, T.Integer32(6)), (4, T.Integer32(1500)), (5, T.Gauge32(1000000000)),
                       (6, T.OctetString(self.mac)), (7, T.Integer32(1)), (8, T.Integer32(1)),
                       (9, T.TimeTicks(0)),
                       (10, T.Counter32(int(elapsed * 2300 + 1000000) & 0xFFFFFFFF)),
                       (16, T.Counter32(int(elapsed * 900 + 400000) & 0xFFFFFFFF))):
            mib[IF_ENTRY + (col, 1)] = v
        # IP-MIB ipAddrTable: the address it answers on
        ip = tuple(int(x) for x in d.address.split("."))
        mib[IP_ADDR_ENTRY + (1,) + ip] = T.IpAddress(d.address)
        mib[IP_ADDR_ENTRY + (2,) + ip] = T.Integer32(1)
        mib[IP_ADDR_ENTRY + (3,) + ip] = T.IpAddress("255.255.255.0")
        # HOST-RESOURCES-MIB
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
            hr_rows.append((5, self.hr_printer_descr, dev_status))
            hr_rows.append((4, "Network interface", 2))
        for t, descr in self.hr_devices:
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
                    errors = st["errors"]
                    if errors & STOPPING_ERRORS:
                        pstatus = 1  # other
                    elif self.rate > 0 and not self.down:
                        pstatus = 4  # printing
                    else:
                        pstatus = 3  # idle
                    bits = 0
                    for e in errors:
                        bits |= 1 << (15 - HR_ERROR_BITS.index(e))
                    estate = bits.to_bytes(2, "big")
                else:
                    pstatus, estate = 3, b"\x00"
                mib[HR_PRINTER_ENTRY + (1, i)] = T.Integer32(pstatus)
                mib[HR_PRINTER_ENTRY + (2, i)] = T.OctetString(estate)
        if printer:
            self._build_printer_mib(mib, st, up, T)
        for oid, typ, value in self.extra:
            mib[oid] = self._extra_value(typ, value, st, T)
        return mib

    def _build_printer_mib(self, mib: dict, st: dict, up: int, T):
        total = st["total"] & 0xFFFFFFFF
        g = PRT_GENERAL_ENTRY
        mib[g + (1, 1)] = T.Counter32(0)                       # prtGeneralConfigChanges
        mib[g + (2, 1)] = T.Integer32(1)                       # prtGeneralCurrentLocalization
        mib[g + (3, 1)] = T.Integer32(3)                       # prtGeneralReset notResetting
        mib[g + (16, 1)] = T.OctetString(self.hr_printer_descr)  # prtGeneralPrinterName
        if self.serial is not None and self.serial_oid:
            mib[g + (17, 1)] = T.OctetString(str(self.serial))  # prtGeneralSerialNumber
        m = PRT_MARKER_ENTRY
        for col, v in ((2, T.Integer32(self.mark_tech)), (3, T.Integer32(7)),
                       (4, T.Counter32(total)), (5, T.Counter32(st["pages"] & 0xFFFFFFFF)),
                       (6, T.Integer32(self.process_colorants)), (7, T.Integer32(0)),
                       (8, T.Integer32(3)), (9, T.Integer32(600)), (10, T.Integer32(600)),
                       (14, T.Integer32(0))):
            if col == 4 and not self.life_count_oid:
                continue
            mib[m + (col, 1, 1)] = v
        s = PRT_SUPPLIES_ENTRY
        for sup, lvl in zip(self.supplies, st["levels"]):
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
        for i, name in enumerate(self.colorants, start=1):
            mib[c + (2, 1, i)] = T.Integer32(1)
            mib[c + (3, 1, i)] = T.Integer32(3)      # process
            mib[c + (4, 1, i)] = T.OctetString(name)
            mib[c + (5, 1, i)] = T.Integer32(256)
        mp = PRT_MEDIA_PATH_ENTRY
        mib[mp + (9, 1, 1)] = T.Integer32(3 if self.duplex else 5)  # longEdgeBindingDuplex | simplex
        # alerts (stable indexes while a condition lasts)
        conditions = {}
        for sup, lvl in zip(self.supplies, st["levels"]):
            if sup.max <= 0 or lvl < 0:
                continue
            ink = sup.type_code in INK_TYPES
            if sup.class_code == 3 and sup.type_code in TONER_TYPES | INK_TYPES:
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
        for key in list(self._alerts):
            if key not in conditions or self._alerts[key][2] != conditions[key][3]:
                del self._alerts[key]
        for key in conditions:
            if key not in self._alerts:
                self._alerts[key] = (self._alert_next, up, conditions[key][3])
                self._alert_next += 1
        a = PRT_ALERT_ENTRY
        for key, (idx, when, _) in self._alerts.items():
            sev, group, gidx, code, text = conditions[key]
            mib[a + (2, 1, idx)] = T.Integer32(sev)
            mib[a + (3, 1, idx)] = T.Integer32(3)     # untrained
            mib[a + (4, 1, idx)] = T.Integer32(group)
            mib[a + (5, 1, idx)] = T.Integer32(gidx)
            mib[a + (6, 1, idx)] = T.Integer32(-1)
            mib[a + (7, 1, idx)] = T.Integer32(code)
            mib[a + (8, 1, idx)] = T.OctetString(text)
            mib[a + (9, 1, idx)] = T.TimeTicks(when)
        # console display
        if self.console:
            line = str(self.console)
        elif conditions:
            worst = min(conditions.values(), key=lambda c: c[0])
            line = worst[4]
        else:
            line = "Printing" if self.rate > 0 else "Ready"
        mib[PRT_CONSOLE_DISPLAY_ENTRY + (2, 1, 1)] = T.OctetString(line)

    def _extra_value(self, typ: str, value, st: dict, T):
        if isinstance(value, str) and value.startswith("@"):
            key = value[1:]
            if key == "total":
                value = st.get("total", 0)
            elif key == "pages":
                value = st["pages"]
            elif key == "color":
                value = st["color_pages"]
            elif key == "mono":
                value = st["pages"] - st["color_pages"] + (self.life0 if self.printer else 0)
            elif key == "serial":
                value = self.serial or ""
            else:
                raise SiteError(f"{self.device.name}: unknown template {value!r}")
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
            return T.ObjectIdentifier(_oid(value))
        if t in ("ip", "ipaddress"):
            return T.IpAddress(str(value))
        raise SiteError(f"{self.device.name}: unknown extra type {typ!r}")


# ----------------------------------------------------------------------- pysnmp agents

def _make_instrum(live: LiveDevice):
    from pysnmp.proto import rfc1902, rfc1905
    from pysnmp.smi.instrum import AbstractMibInstrumController

    class LiveMibInstrum(AbstractMibInstrumController):
        """Sorted OID -> value store computed live from the device state."""

        def read_variables(self, *varBinds, **context):
            mib, _ = live.snapshot()
            out = []
            for name, _ in varBinds:
                oid = tuple(name)
                v = mib.get(oid)
                if v is None:
                    v = rfc1905.noSuchInstance if any(
                        k[:len(oid) - 1] == oid[:-1] for k in mib) else rfc1905.noSuchObject
                out.append((rfc1902.ObjectName(oid), v))
            return out

        def read_next_variables(self, *varBinds, **context):
            mib, keys = live.snapshot()
            out = []
            for name, _ in varBinds:
                oid = tuple(name)
                i = bisect.bisect_right(keys, oid)
                if i < len(keys):
                    out.append((rfc1902.ObjectName(keys[i]), mib[keys[i]]))
                else:
                    out.append((rfc1902.ObjectName(oid), rfc1905.endOfMibView))
            return out

        def write_variables(self, *varBinds, **context):
            from pysnmp.smi import error as smi_error
            raise smi_error.NotWritableError(idx=0)

    return LiveMibInstrum()


@functools.lru_cache(maxsize=None)
def _bulk_responder_class():
    from pysnmp.entity.rfc3413 import cmdrsp
    from pysnmp.proto.api import v2c
    from pysnmp.smi import error as smi_error

    class BulkResponder(cmdrsp.BulkCommandResponder):
        """GETBULK that stops repeating once a whole repetition is past the end of the MIB."""

        def handle_management_operation(self, snmpEngine, stateReference, contextName, PDU):
            non_rep = max(0, int(v2c.apiBulkPDU.get_non_repeaters(PDU)))
            max_rep = max(0, int(v2c.apiBulkPDU.get_max_repetitions(PDU)))
            req = v2c.apiPDU.get_varbinds(PDU)
            N = min(non_rep, len(req))
            R = max(len(req) - N, 0)
            M = min(max_rep, self.max_varbinds // R) if R else 0
            fun = self.snmpContext.get_mib_instrum(contextName).read_next_variables
            ctx = dict(snmpEngine=snmpEngine, acFun=self.verify_access, cbCtx=self.cbCtx)
            rsp = list(fun(*req[:N], **ctx)) if N else []
            vbs = req[-R:] if R else []
            while M and R:
                row = fun(*vbs, **ctx)
                rsp.extend(row)
                vbs = row
                M -= 1
                if all(v.tagSet == v2c.EndOfMibView.tagSet for _, v in row):
                    break
            if rsp:
                self.send_varbinds(snmpEngine, stateReference, 0, 0, rsp)
                self.release_state_information(stateReference)
            else:
                raise smi_error.SmiError()

    return BulkResponder


@functools.lru_cache(maxsize=None)
def _transport_class():
    from pysnmp.carrier.asyncio.dgram import udp

    class FaultyUdpTransport(udp.UdpAsyncioTransport):
        """UDP transport that obeys the device's injected faults."""

        fb_live: LiveDevice | None = None

        def datagram_received(self, datagram, transportAddress):
            live = self.fb_live
            if live is not None:
                if live.down or live.unreachable:
                    return
                if live.loss and random.random() < live.loss:
                    return
                if live.delay > 0:
                    self.loop.call_later(live.delay, udp.UdpAsyncioTransport.datagram_received,
                                         self, datagram, transportAddress)
                    return
            udp.UdpAsyncioTransport.datagram_received(self, datagram, transportAddress)

    return FaultyUdpTransport


_V3_AUTH = {"none": "USM_AUTH_NONE", "md5": "USM_AUTH_HMAC96_MD5", "sha": "USM_AUTH_HMAC96_SHA",
            "sha224": "USM_AUTH_HMAC128_SHA224", "sha256": "USM_AUTH_HMAC192_SHA256",
            "sha384": "USM_AUTH_HMAC256_SHA384", "sha512": "USM_AUTH_HMAC384_SHA512"}
_V3_PRIV = {"none": "USM_PRIV_NONE", "des": "USM_PRIV_CBC56_DES", "3des": "USM_PRIV_CBC168_3DES",
            "aes": "USM_PRIV_CFB128_AES", "aes128": "USM_PRIV_CFB128_AES",
            "aes192": "USM_PRIV_CFB192_AES_BLUMENTHAL", "aes256": "USM_PRIV_CFB256_AES_BLUMENTHAL",
            "aes192c": "USM_PRIV_CFB192_AES", "aes256c": "USM_PRIV_CFB256_AES"}


class _Agents:
    """All dynamic agents: one SnmpEngine per device, in one asyncio loop in one thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="fleetbox-site-agents", daemon=True)
        self.engines: list = []
        self.started = False

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self):
        self.thread.start()
        self.started = True

    def add(self, device: Device):
        """Bind the device's socket here (clear errors), then build its engine in the loop."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(device.endpoint)
        except OSError as exc:
            sock.close()
            hint = ""
            if exc.errno == errno.EACCES:
                hint = " (privileged port: run as root or use a port override >= 1024)"
            raise SiteError(f"device {device.name}: cannot bind UDP {device.address}:{device.port}: "
                            f"{exc.strerror}{hint}") from None
        sock.setblocking(False)
        fut = asyncio.run_coroutine_threadsafe(self._setup(device, sock), self.loop)
        try:
            self.engines.append(fut.result(30))
        except Exception:
            sock.close()
            raise

    async def _setup(self, device: Device, sock: socket.socket):
        from pysnmp.carrier.asyncio.dgram import udp
        from pysnmp.entity import config, engine
        from pysnmp.entity.rfc3413 import cmdrsp, context

        live = device.live
        # auto engine ID: a custom one makes pysnmp persist engine boots under /tmp/__pysnmp
        eng = engine.SnmpEngine()
        transport = _transport_class()(loop=asyncio.get_running_loop())
        transport.fb_live = live
        transport.open_server_mode(sock=sock)
        config.add_transport(eng, udp.DOMAIN_NAME, transport)
        config.add_v1_system(eng, "fleetbox-area", device.community)
        if live.v3:
            v3 = live.v3
            auth = getattr(config, _V3_AUTH[str(v3.get("auth", "none")).lower()])
            priv = getattr(config, _V3_PRIV[str(v3.get("priv", "none")).lower()])
            config.add_v3_user(eng, str(v3["user"]), auth, v3.get("auth_key"), priv, v3.get("priv_key"))
        ctx = context.SnmpContext(eng)
        ctx.unregister_context_name(b"")
        ctx.register_context_name(b"", _make_instrum(live))
        cmdrsp.GetCommandResponder(eng, ctx)
        cmdrsp.NextCommandResponder(eng, ctx)
        _bulk_responder_class()(eng, ctx)
        return eng

    def stop(self):
        if not self.started:
            return
        self.started = False

        async def close_all():
            for eng in self.engines:
                try:
                    eng.close_dispatcher()
                except Exception:
                    pass

        if self.thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(5)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        if not self.thread.is_alive():
            try:
                self.loop.close()
            except Exception:
                pass
        self.engines = []


# ------------------------------------------------------------------------------ snmpsim

# snmpsim's own main(), plus a watchdog: if the parent (this Python) dies, exit too.
_SNMPSIM_BOOT = r"""
import os, shutil, sys, threading, time
_parent = int(sys.argv.pop(1))
_tmp = sys.argv.pop(1)
def _watch():
    while True:
        time.sleep(0.5)
        if os.getppid() != _parent:
            shutil.rmtree(_tmp, ignore_errors=True)
            os._exit(0)
threading.Thread(target=_watch, daemon=True).start()
from snmpsim.commands.responder import main
sys.argv[0] = "snmpsim-command-responder"
sys.exit(main())
"""


def _unprivileged_port_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text().strip())
    except (OSError, ValueError):
        return 1024


def _readable_by_others(path: Path) -> bool:
    """True if 'other' users can traverse every parent of path and read path."""
    try:
        path = path.resolve()
        for p in [*reversed(path.parents), path]:
            mode = p.stat().st_mode
            if not mode & stat.S_IXOTH:
                return False
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


def _nobody() -> tuple[str, str] | None:
    try:
        user = pwd.getpwnam("nobody").pw_name
    except KeyError:
        return None
    for g in ("nogroup", "nobody"):
        try:
            return user, grp.getgrnam(g).gr_name
        except KeyError:
            continue
    return None


class _Snmpsim:
    """ONE snmpsim process serving every recorded device: one SNMP engine per device
    (own data dir, own endpoint), so each answers its own community with its own file."""

    def __init__(self, devices: list[Device]):
        self.devices = devices
        self.proc: subprocess.Popen | None = None
        self.tmp: Path | None = None
        self.log_path: Path | None = None
        self.privileges = ""

    def start(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fleetbox-site-snmpsim-"))
        os.chmod(self.tmp, 0o755)
        data = self.tmp / "data"
        cache = self.tmp / "cache"
        data.mkdir(mode=0o755)
        cache.mkdir(mode=0o755)
        self.log_path = self.tmp / "snmpsim.log"
        args = [sys.executable, "-c", _SNMPSIM_BOOT, str(os.getpid()), str(self.tmp),
                f"--cache-dir={cache}"]
        for i, dev in enumerate(self.devices):
            d = data / f"{i:02d}-{dev.name}"
            d.mkdir(mode=0o755)
            target = d / f"{dev.community}.snmprec"
            shutil.copyfile(dev.served_recording(), target)   # a copy: snmpsim mis-handles symlinks
            os.chmod(target, 0o644)
            # one engine per device ("auto" ID: a fixed one makes pysnmp write /tmp/__pysnmp)
            args += ["--v3-engine-id=auto", f"--data-dir={d}",
                     f"--agent-udpv4-endpoint={dev.address}:{dev.port}"]
        env = dict(os.environ)
        env.pop("SNMPSIM_ALLOW_ROOT", None)
        if os.geteuid() == 0:
            # snmpsim refuses to run as root. Its --process-user drops privileges *before*
            # asyncio actually binds the sockets, so that only works for ports a non-root
            # user may bind, and only if that user can read this Python installation.
            ports_ok = min(d.port for d in self.devices) >= _unprivileged_port_start()
            runtime_ok = all(_readable_by_others(Path(p)) for p in
                             (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]))
            nobody = _nobody()
            if ports_ok and runtime_ok and nobody:
                user, group = nobody
                os.chown(cache, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
                args += [f"--process-user={user}", f"--process-group={group}"]
                self.privileges = f"dropped to {user}:{group}"
            else:
                env["SNMPSIM_ALLOW_ROOT"] = "true"
                why = []
                if not ports_ok:
                    why.append(f"ports below {_unprivileged_port_start()} need root to bind")
                if not runtime_ok:
                    why.append("this Python is not readable by unprivileged users")
                if not nobody:
                    why.append("no nobody user")
                self.privileges = "root (" + "; ".join(why) + ")"
        else:
            self.privileges = f"uid {os.geteuid()}"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True, cwd=str(self.tmp))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except (OSError, AttributeError):
            return ""
        return "\n".join(lines[-n:])

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is not None:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    # the group may hold stragglers even when the leader is gone
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


# --------------------------------------------------------------- minimal SNMP GET client

def _encode_get(version: str, community: str, reqid: int, oids) -> bytes:
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import api

    p = api.PROTOCOL_MODULES[api.SNMP_VERSION_1 if version == "1" else api.SNMP_VERSION_2C]
    pdu = p.GetRequestPDU()
    p.apiPDU.set_defaults(pdu)
    p.apiPDU.set_request_id(pdu, reqid)
    p.apiPDU.set_varbinds(pdu, [(_oid(o), p.Null("")) for o in oids])
    msg = p.Message()
    p.apiMessage.set_defaults(msg)
    p.apiMessage.set_community(msg, community)
    p.apiMessage.set_pdu(msg, pdu)
    return encoder.encode(msg)


def _decode_response(data: bytes):
    from pyasn1.codec.ber import decoder
    from pysnmp.proto import api

    ver = int(api.decodeMessageVersion(data))
    p = api.PROTOCOL_MODULES[ver]
    msg, _ = decoder.decode(data, asn1Spec=p.Message())
    pdu = p.apiMessage.get_pdu(msg)
    return (int(p.apiPDU.get_request_id(pdu)), int(p.apiPDU.get_error_status(pdu)),
            [(str(o), v) for o, v in p.apiPDU.get_varbinds(pdu)])


def snmp_get(address: str, port: int = 161, community: str = "public",
             oids=(OID_SYS_DESCR,), version: str = "2c", timeout: float = 2.0,
             retries: int = 1) -> list[tuple[str, Any]]:
    """Synchronous SNMP v1/v2c GET. Returns [(oid, pysnmp value)]; raises TimeoutError,
    or SiteError on an error-status."""
    reqid = random.randint(1, 2**31 - 1)
    data = _encode_get(version, community, reqid, oids)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(retries + 1):
            s.sendto(data, (address, port))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    resp, _ = s.recvfrom(65535)
                except socket.timeout:
                    break
                try:
                    rid, err, vbs = _decode_response(resp)
                except Exception:
                    continue
                if rid != reqid:
                    continue
                if err:
                    raise SiteError(f"{address}:{port} answered error-status {err}")
                return vbs
    raise TimeoutError(f"no SNMP answer from {address}:{port}")


def _wait_ready(devices: list[Device], timeout: float, alive=lambda: True) -> list[Device]:
    """GET sysDescr from every device until all answer; returns those that did not."""
    pending = {d.name: d for d in devices}
    ids: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        while pending and time.monotonic() < deadline:
            for d in pending.values():
                rid = random.randint(1, 2**31 - 1)
                ids[rid] = d.name
                try:
                    s.sendto(_encode_get("2c", d.community, rid, [OID_SYS_DESCR]), d.endpoint)
                except OSError:
                    pass
            round_end = min(deadline, time.monotonic() + 0.3)
            while pending and (left := round_end - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    resp, _ = s.recvfrom(65535)
                except socket.timeout:
                    break
                except OSError:     # ICMP port unreachable surfaces here on Linux
                    continue
                try:
                    rid, err, _ = _decode_response(resp)
                except Exception:
                    continue
                name = ids.get(rid)
                if name in pending and not err:
                    del pending[name]
            if not alive():
                break
    return list(pending.values())


# --------------------------------------------------------------------------------- Site

_LIVE_SITES: "weakref.WeakSet[Site]" = weakref.WeakSet()


@atexit.register
def _stop_all_sites():
    for site in list(_LIVE_SITES):
        try:
            site.stop()
        except Exception:
            pass


class Site:
    """A simulated customer site. See the module docstring."""

    def __init__(self, description: dict, port_override: int | None = None,
                 speed: float | None = None, source: str = "<dict>", web_ports: dict | None = None):
        if not isinstance(description, dict) or not isinstance(description.get("devices"), list):
            raise SiteError(f"{source}: expected a mapping with a 'devices' list")
        self.source = source
        self.description = description
        defaults = description.get("defaults") or {}
        self.speed = float(speed if speed is not None else description.get("speed", 1.0))
        self.network = ipaddress.IPv4Network(description["network"]) if description.get("network") else None
        self.devices: list[Device] = [Device(spec, defaults, port_override, self.speed)
                                      for spec in description["devices"]]
        names, endpoints = set(), set()
        for d in self.devices:
            if d.name in names:
                raise SiteError(f"{source}: duplicate device name {d.name!r}")
            names.add(d.name)
            if d.endpoint in endpoints:
                raise SiteError(f"{source}: two devices on {d.address}:{d.port}")
            endpoints.add(d.endpoint)
            if self.network and ipaddress.IPv4Address(d.address) not in self.network:
                raise SiteError(f"{source}: {d.name} {d.address} is outside {self.network}")
        self._by_name = {d.name: d for d in self.devices}
        self._agents: _Agents | None = None
        self._snmpsim: _Snmpsim | None = None
        self.web_ports = web_ports or {}    # printers' web servers: {80: 17080, 443: 17444} (simulator/webpages.py)
        self._relays: list = []      # Canon-style extra agents (simulator/canon47545.py)
        self._lock = threading.Lock()
        self.running = False

    # ---- construction
    @classmethod
    def from_yaml(cls, path: str | Path | None = None, port_override: int | None = None,
                  speed: float | None = None, web_ports: dict | None = None) -> "Site":
        path = Path(path) if path else DEFAULT_SITE_YAML
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise SiteError(f"cannot read site description {path}: {exc}") from None
        return cls(data, port_override=port_override, speed=speed, source=str(path), web_ports=web_ports)

    @classmethod
    def from_dict(cls, data: dict, port_override: int | None = None,
                  speed: float | None = None, web_ports: dict | None = None) -> "Site":
        return cls(data, port_override=port_override, speed=speed, web_ports=web_ports)

    # ---- lookups
    def device(self, name: str) -> Device:
        try:
            return self._by_name[name]
        except KeyError:
            raise SiteError(f"no device named {name!r}") from None

    @property
    def printers(self) -> list[Device]:
        return [d for d in self.devices if d.is_printer]

    # ---- lifecycle
    def start(self, timeout: float = READY_TIMEOUT) -> "Site":
        with self._lock:
            if self.running:
                return self
            self.running = True
            _LIVE_SITES.add(self)
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float):
        recorded = [d for d in self.devices if d.kind == "recording"]
        dynamic = [d for d in self.devices if d.kind == "dynamic"]
        # check the recorded endpoints are free before snmpsim hides bind errors in its log
        for d in recorded:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(d.endpoint)
                except OSError as exc:
                    hint = " (privileged port: run as root or use a port override >= 1024)" \
                        if exc.errno == errno.EACCES else ""
                    raise SiteError(f"device {d.name}: cannot bind UDP {d.address}:{d.port}: "
                                    f"{exc.strerror}{hint}") from None
        if recorded:
            self._snmpsim = _Snmpsim(recorded)
            self._snmpsim.start()
        if dynamic:
            self._agents = _Agents()
            self._agents.start()
            for d in dynamic:
                self._agents.add(d)
        for d in dynamic:
            if d.spec.get("web") is not None:
                from simulator.webpages import PrinterWeb
                web = PrinterWeb(d, self.web_ports)
                try:
                    web.start()
                except OSError as exc:
                    raise SiteError(f"device {d.name}: cannot serve its web page: {exc}") from None
                d.web = web
        sim = self._snmpsim
        missing = _wait_ready(self.devices, timeout,
                              alive=(lambda: sim.alive()) if sim else (lambda: True))
        if sim is not None and not sim.alive():
            raise SiteError("snmpsim exited while starting the recorded devices "
                            f"({', '.join(d.name for d in recorded)}):\n{sim.log_tail()}")
        if missing:
            names = ", ".join(f"{d.name} ({d.kind}, {d.address}:{d.port})" for d in missing)
            msg = f"site did not come up within {timeout:.0f} s: no SNMP answer from {names}"
            if sim is not None and any(d.kind == "recording" for d in missing):
                msg += f"\nsnmpsim log tail:\n{sim.log_tail()}"
            raise SiteError(msg)
        try:
            from simulator import canon47545
        except ImportError:      # site.py run as a script from simulator/
            import canon47545
        self._relays = canon47545.start_for(self.devices)

    def stop(self):
        with self._lock:
            relays, self._relays = self._relays, []
            agents, self._agents = self._agents, None
            sim, self._snmpsim = self._snmpsim, None
            self.running = False
            _LIVE_SITES.discard(self)
        for r in relays:
            r.stop()
        for d in self.devices:
            web, d.web = d.web, None
            if web is not None:
                web.stop()
        if agents is not None:
            agents.stop()
        if sim is not None:
            sim.stop()

    def __enter__(self) -> "Site":
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __del__(self):
        try:
            if self.running:
                self.stop()
        except Exception:
            pass

    # ---- information
    def truth(self) -> list[dict]:
        """One dict per printer: what its agent serves right now (dynamic) or what the
        recording holds (recorded), sorted by ip."""
        out = [d.truth() for d in self.printers]
        out.sort(key=lambda r: (ipaddress.IPv4Address(r["ip"]), r["port"]))
        return out

    @property
    def snmpsim_privileges(self) -> str | None:
        return self._snmpsim.privileges if self._snmpsim else None

    @property
    def snmpsim_pid(self) -> int | None:
        return self._snmpsim.proc.pid if self._snmpsim and self._snmpsim.proc else None

    # ---- fault injection
    def set_fault(self, name: str, kind: str, **params):
        """Inject a fault into a dynamic device.

        kind: ``down`` (powered off: no answer, no printing, uptime restarts on ``up``),
        ``unreachable`` (no answer, keeps printing), ``slow`` (answers after ``delay`` s,
        default 2), ``lossy`` (drops a ``loss`` share of requests, default 0.5), ``up``
        (clears down/unreachable/slow/lossy), a printer error name such as ``jammed``,
        ``doorOpen``, ``noPaper`` (sets hrPrinterDetectedErrorState and an alert), or
        ``clear`` (clears injected errors).
        """
        dev = self.device(name)
        if kind not in FAULT_KINDS:
            raise SiteError(f"unknown fault {kind!r}; one of {sorted(FAULT_KINDS)}")
        if dev.live is None:
            raise SiteError(f"fault injection is only implemented for dynamic devices; "
                            f"{name} is a {dev.kind}")
        dev.live.set_fault(kind, **params)

    def print_pages(self, name: str, n: int):
        """Make a dynamic printer print n more pages at once."""
        dev = self.device(name)
        if dev.live is None or not dev.is_printer:
            raise SiteError(f"{name} is not a dynamic printer")
        dev.live.print_pages(n)


# ---------------------------------------------------------------------------------- CLI

def _table(site: Site):
    from rich.table import Table

    truth = {(t["ip"], t["port"]): t for t in site.truth()}
    t = Table(title=f"fleetbox simulated site ({site.source})")
    for col in ("name", "endpoint", "community", "kind", "printer", "vendor / model",
                "serial", "total", "supplies"):
        t.add_column(col)
    for d in sorted(site.devices, key=lambda d: (ipaddress.IPv4Address(d.address), d.port)):
        tr = truth.get(d.endpoint)
        sup = ""
        if tr:
            sup = " ".join(f"{(s.get('color') or s['description'])[:8]}:{s['level']}/{s['max']}"
                           for s in tr["supplies"][:5])
        t.add_row(d.name, f"{d.address}:{d.port}", d.community, d.kind,
                  "yes" if d.is_printer else "no",
                  " ".join(x for x in (d.manufacturer, d.model) if x) or "-",
                  str(tr["serial"]) if tr and tr["serial"] else "-",
                  str(tr["total"]) if tr and tr["total"] is not None else "-",
                  sup)
    return t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulator.site",
                                 description="Run the simulated customer site until Ctrl-C.")
    ap.add_argument("--config", help="site description (default simulator/site.yaml)")
    ap.add_argument("--port", type=int, help="UDP port for every device (default: from the YAML, 161)")
    ap.add_argument("--speed", type=float, help="multiply every printing rate")
    ap.add_argument("--once", action="store_true", help="start, print the table, stop")
    args = ap.parse_args(argv)
    from rich.console import Console
    from rich.live import Live

    console = Console()
    try:
        site = Site.from_yaml(args.config, port_override=args.port, speed=args.speed)
        t0 = time.monotonic()
        site.start()
    except SiteError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    console.print(f"site up in {time.monotonic() - t0:.1f} s; snmpsim: {site.snmpsim_privileges}")
    try:
        if args.once:
            console.print(_table(site))
            return 0
        with Live(_table(site), console=console, refresh_per_second=1) as live:
            while True:
                time.sleep(2)
                live.update(_table(site))
    except KeyboardInterrupt:
        pass
    finally:
        site.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
