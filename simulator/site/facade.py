"""`Site`: the one object tests, benchmarks and the runner hold. It builds the devices
from a description, starts and stops their agents (pysnmp thread, snmpsim process, web
pages, Canon relays) as a unit, answers what the printers serve, and injects faults."""
from __future__ import annotations

import atexit
import ipaddress
import socket
import threading
import weakref
from pathlib import Path

from simulator.site.agents import Agents
from simulator.site.client import wait_ready
from simulator.site.device import Device
from simulator.site.errors import SiteError, bind_error
from simulator.site.mib import FAULT_KINDS
from simulator.site.snmpsim_proc import Snmpsim
from simulator.site.spec import build_devices, read_yaml

READY_TIMEOUT = 30.0

_LIVE_SITES: "weakref.WeakSet[Site]" = weakref.WeakSet()


@atexit.register
def _stop_all_sites():
    for site in list(_LIVE_SITES):
        try:
            site.stop()
        except Exception:
            pass


class Site:
    """A simulated customer site. See the package docstring."""

    def __init__(self, description: dict, port_override: int | None = None,
                 speed: float | None = None, source: str = "<dict>", web_ports: dict | None = None):
        self.source = source
        self.description = description
        self.speed, self.network, self.devices = build_devices(description, port_override, speed, source)
        self._by_name = {d.name: d for d in self.devices}
        self._agents: Agents | None = None
        self._snmpsim: Snmpsim | None = None
        self.web_ports = web_ports or {}    # printers' web servers: {80: 17080, 443: 17444} (simulator/webpages.py)
        self._relays: list = []      # Canon-style extra agents (simulator/canon47545.py)
        self._lock = threading.Lock()
        self.running = False

    # ---- construction
    @classmethod
    def from_yaml(cls, path: str | Path | None = None, port_override: int | None = None,
                  speed: float | None = None, web_ports: dict | None = None) -> "Site":
        data, source = read_yaml(path)
        return cls(data, port_override=port_override, speed=speed, source=source, web_ports=web_ports)

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
                    raise bind_error(d, exc) from None
        if recorded:
            self._snmpsim = Snmpsim(recorded)
            self._snmpsim.start()
        if dynamic:
            self._agents = Agents()
            self._agents.start()
            for d in dynamic:
                self._agents.add(d)
        self._start_web_pages(dynamic)
        self._wait_ready(timeout, recorded)
        from simulator import canon47545
        self._relays = canon47545.start_for(self.devices)

    def _start_web_pages(self, dynamic: list[Device]):
        for d in dynamic:
            if d.spec.get("web") is not None:
                from simulator.webpages import PrinterWeb
                web = PrinterWeb(d, self.web_ports)
                try:
                    web.start()
                except OSError as exc:
                    raise SiteError(f"device {d.name}: cannot serve its web page: {exc}") from None
                d.web = web

    def _wait_ready(self, timeout: float, recorded: list[Device]):
        sim = self._snmpsim
        missing = wait_ready(self.devices, timeout,
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
