"""A dynamic device's state while the site runs: what its description says, how far it
has printed, which faults are injected, and the MIB view the agent serves (cached
briefly, since a walk asks for it once per request)."""
from __future__ import annotations

import math
import threading
import time

from simulator.site import livemib
from simulator.site.errors import SiteError
from simulator.site.mib import (HR_DEVICE_TYPES, HR_ERROR_BITS, MARK_TECH, FAULT_KINDS,
                                lookup_code, mac_bytes, mac_text, parse_oid)
from simulator.site.physics import Clock, Supply, supply_errors


class LiveDevice:
    """State and live MIB of a dynamic device."""

    def __init__(self, device, speed: float):
        spec = device.spec
        self.device = device
        self.lock = threading.RLock()
        self.sys_descr = str(spec.get("sys_descr", device.model or device.name))
        self.sys_object_id = parse_oid(spec.get("sys_object_id", "1.3.6.1.4.1.8072.3.2.10"))
        self.sys_name = str(spec.get("sys_name", device.name))
        self.location = str(spec.get("location", ""))
        self.contact = str(spec.get("contact", ""))
        self.mac = mac_bytes(spec.get("mac"), device.address)
        self.serial = spec.get("serial")
        self.hr_devices = []
        for d in spec.get("hr_devices") or []:
            self.hr_devices.append((lookup_code(HR_DEVICE_TYPES, d.get("type", "other"), "hr device type"),
                                    str(d.get("descr", ""))))
        self.extra = []
        for e in spec.get("extra") or []:
            self.extra.append((parse_oid(e["oid"]), str(e.get("type", "string")), e.get("value")))
        self.v3 = spec.get("v3")
        self.printer = None
        p = spec.get("printer")
        if p:
            if not isinstance(p, dict):
                raise SiteError(f"device {device.name}: 'printer' must be a mapping for kind dynamic")
            self.printer = p
            self._read_printer(p, speed)
        # runtime state
        self.clock = Clock()
        self.boot = time.monotonic()
        self.extra_pages = 0
        self.down = False          # powered off: no answer, no printing
        self.unreachable = False   # no answer, keeps printing
        self.delay = 0.0           # "slow": seconds before answering
        self.loss = 0.0            # "lossy": probability of dropping a request
        self.fault_errors: set[str] = set()
        self.alerts = livemib.AlertTable()
        self._cache: tuple[float, dict, list] | None = None

    def _read_printer(self, p: dict, speed: float):
        device = self.device
        self.hr_printer_descr = str(p.get("hr_device_descr") or
                                    " ".join(x for x in (device.manufacturer, device.model) if x))
        self.mark_tech = lookup_code(MARK_TECH, p.get("technology", "laser"), "technology")
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
        self.supplies: list[Supply] = []
        for i, s in enumerate(p.get("supplies") or [], start=1):
            c = s.get("colorant")
            ci = 0
            if c:
                c = str(c)
                if c not in colorants:
                    colorants.append(c)
                ci = colorants.index(c) + 1
            self.supplies.append(Supply(i, s, ci, c))
        self.colorants = colorants
        self.process_colorants = int(p.get("process_colorants", max(1, len(colorants))))
        default_ratio = 0.3 if self.process_colorants > 1 else 0.0
        self.color_ratio = float(p.get("color_ratio", default_ratio))

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
                out["errors"] = (set(self.static_errors) | self.fault_errors
                                 | supply_errors(self.supplies, out["levels"]))
            return out

    def truth(self) -> dict:
        d = self.device
        st = self.state()
        out = {"name": d.name, "kind": d.kind, "ip": d.address, "port": d.port,
               "manufacturer": d.manufacturer, "model": d.model,
               "serial": None if self.serial is None else str(self.serial),
               "serial_source": None if self.serial is None else "prtGeneralSerialNumber",
               "total": None, "total_source": None, "mac": mac_text(self.mac),
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
            mib = livemib.build_mib(self, now)
            keys = sorted(mib)
            self._cache = (now, mib, keys)
            return mib, keys
