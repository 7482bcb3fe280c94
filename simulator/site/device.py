"""One device of the site description: its spec checked (a bad address or port fails
here, before anything binds), the recording it replays or the live state it runs, and
what it serves — the truth a collector's record is compared against."""
from __future__ import annotations

import atexit
import ipaddress
import os
import tempfile
from pathlib import Path

from simulator.site.errors import SiteError
from simulator.site.live import LiveDevice
from simulator.site.paths import walks_dir
from simulator.site.snmprec import parse_snmprec, readdress_snmprec, recording_truth


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
        self._check_endpoint()
        self.live: LiveDevice | None = None
        self.web = None            # simulator.webpages.PrinterWeb while the site runs
        self.recording: Path | None = None
        if spec.get("web") is not None and not (self.kind == "dynamic" and spec.get("printer")):
            raise SiteError(f"device {self.name}: 'web' is for dynamic printers")
        if self.kind == "dynamic":
            self.is_printer = bool(spec.get("printer"))
            self.live = LiveDevice(self, speed)
        elif self.kind == "recording":
            self._find_recording()
        else:
            raise SiteError(f"device {self.name}: unknown kind {self.kind!r} (dynamic|recording)")
        self._records: dict | None = None
        self._served: Path | None = None

    def _check_endpoint(self):
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

    def _find_recording(self):
        spec = self.spec
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
        return recording_truth(self, self.records())


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
