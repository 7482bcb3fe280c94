"""Printer physics: how a dynamic printer's pages and supply levels follow from the
time it has been printing. Pure arithmetic, no SNMP, so levels can be reasoned about
(and tested) on their own."""
from __future__ import annotations

import math
import time

from simulator.site.errors import SiteError
from simulator.site.mib import (COLOR_COLORANTS, INK_TYPES, SUPPLY_CLASSES, SUPPLY_TYPES,
                                SUPPLY_UNITS, TONER_TYPES, WASTE_TYPES, lookup_code)


class Supply:
    """One prtMarkerSupplies row: a cartridge that drains or a receptacle that fills."""

    def __init__(self, index: int, spec: dict, colorant_index: int, colorant: str | None):
        self.index = index
        self.description = str(spec.get("description", f"Supply {index}"))
        self.type_code = lookup_code(SUPPLY_TYPES, spec.get("type", "toner"), "supply type")
        default_class = "filled" if self.type_code in WASTE_TYPES else "consumed"
        self.class_code = lookup_code(SUPPLY_CLASSES, spec.get("class", default_class), "supply class")
        self.unit_code = lookup_code(SUPPLY_UNITS, spec.get("unit", "percent"), "supply unit")
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

    @property
    def is_marking(self) -> bool:
        """A consumed toner or ink: its emptiness is a printer error and an alert."""
        return self.class_code == 3 and self.type_code in TONER_TYPES | INK_TYPES

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


class Clock:
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


def supply_errors(supplies: list[Supply], levels: list[int]) -> set[str]:
    """hrPrinterDetectedErrorState names that the supply levels raise by themselves."""
    errors = set()
    for s, lvl in zip(supplies, levels):
        if s.is_marking and s.max > 0 and lvl >= 0:
            if lvl == 0:
                errors.add("noToner")
            elif lvl * 10 < s.max:
                errors.add("lowToner")
    return errors
