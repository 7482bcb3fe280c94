"""``python -m simulator.site``: run the site for a person, with a live table of what
each device serves, until Ctrl-C."""
from __future__ import annotations

import argparse
import ipaddress
import time

from simulator.site.errors import SiteError
from simulator.site.facade import Site


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
