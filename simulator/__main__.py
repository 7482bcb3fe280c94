"""python -m simulator run [--forever]: the box on MicroPython against a simulated site and cloud.

Faults are injected with --fault SECONDS:COMMAND (after boot) or, with --forever, by
typing commands on stdin (`help` lists them): power-cut, cable-pull, liberty-down, ...
"""
import argparse
import logging
import os
import sys
import threading
import time

from simulator.runner import FAULTS, ROOT, SimError, Simulation


def _schedule(sim, console, faults):
    """Run each 'SECONDS:COMMAND' of --fault that many seconds after boot."""
    def run():
        t0 = time.time()
        for at, command in sorted(faults):
            time.sleep(max(0, at - (time.time() - t0)))
            _apply(sim, console, command)
    threading.Thread(target=run, daemon=True).start()


def _apply(sim, console, command):
    try:
        console.print("[bold]fault[/bold] %s: %s" % (command, sim.inject(command)))
    except (SimError, ValueError, IndexError) as e:
        console.print("[red]%s[/red]" % e)


def _read_commands(sim, console):
    for line in sys.stdin:
        line = line.strip()
        if line in ("help", "?"):
            console.print(FAULTS, markup=False)
        elif line:
            _apply(sim, console, line)


def _fault_arg(text):
    at, sep, command = text.partition(":")
    try:
        return float(at), command.strip()
    except ValueError:
        raise argparse.ArgumentTypeError("--fault takes SECONDS:COMMAND, e.g. 20:cable-pull")


def report(sim, console):
    sys.path.insert(0, os.path.join(ROOT, "host-tools"))
    from fbtool.scan import table
    devices = sim.devices()
    cycles = sim.cycles()
    console.print(table(devices, "What the cloud received from %s: %d printers, %d collection cycles" % (
        sim.serial, len(devices), len(cycles))))


def update_story(sim, console, args):
    """--update: a cycle on the flashed firmware, then the next version signed, published, rolled out,
    downloaded, installed, booted on trial and confirmed; the cloud's rollout at the end. 0: confirmed."""
    sim.wait_cycles(1, args.timeout)
    console.print(sim.status_line(), markup=False)
    console.print("update: the box uploads with its flashed firmware; signing the next version of this tree")
    since = len(sim.box_log)
    rid = sim.updates.offer()
    state, reason = sim.updates.follow(rid, timeout=args.timeout, since=since)
    console.print(sim.updates.status(rid), markup=False)
    console.print(sim.status_line(), markup=False)
    if state != "confirmed":
        console.print("[red]update not confirmed:[/red] %s %s" % (state, reason or ""))
        return 1
    console.print("update: rollout %d confirmed by %s" % (rid, sim.serial))
    return 0


def cmd_run(args):
    from rich.console import Console
    console = Console(width=None if sys.stdout.isatty() else 150)
    logging.basicConfig(level=logging.WARNING, format="cloud: %(message)s")
    sim_class = Simulation
    if args.board == "qemu-x86_64":   # the box as the QEMU appliance (simulator/qemu.py)
        from simulator.qemu import QemuSimulation as sim_class
    sim = sim_class(args.state, snmp_port=args.snmp_port, cloud_port=args.cloud_port, interval=args.interval,
                     watchdog_s=args.watchdog_s, rtc=args.rtc or None,
                     web_ports={80: args.http_port, 443: args.https_port},
                     **({} if args.board == "qemu-x86_64" else {"fresh": not args.seeded}),
                     updates=args.update or any(c.split()[:1] == ["update"] for _, c in args.fault or ()),
                     echo=console.print if args.verbose
                     else (lambda s: None if s.startswith("  |") else console.print(s)))
    code = 0
    try:
        sim.start()
        if args.fault:
            _schedule(sim, console, args.fault)
        if args.forever:
            console.print("running until Ctrl-C; the box's state on every change below; "
                          "type a fault command (help lists them)")
            threading.Thread(target=_read_commands, args=(sim, console), daemon=True).start()
            last = None
            while True:
                if sim.hw.exit is not None:
                    raise SimError("the box stopped (exit %s)" % sim.hw.exit)
                line = sim.status_line()
                if line != last:
                    console.print(line, markup=False)
                    last = line
                time.sleep(0.5)
        elif args.update:
            code = update_story(sim, console, args)
        else:
            sim.wait_cycles(args.cycles, args.timeout)
            console.print(sim.status_line(), markup=False)
            report(sim, console)
    except KeyboardInterrupt:
        report(sim, console)
    except SimError as e:
        console.print("[red]simulation failed:[/red] %s" % e)
        code = 1
    finally:
        sim.stop()
    return code


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the whole simulation", formatter_class=argparse.RawTextHelpFormatter)
    r.add_argument("--forever", action="store_true", help="keep running until Ctrl-C")
    r.add_argument("--cycles", type=int, default=2, help="collection cycles to wait for (default 2)")
    r.add_argument("--interval", type=int, default=15, help="seconds between collection cycles")
    r.add_argument("--timeout", type=int, default=240, help="give up after this many seconds")
    r.add_argument("--state", default=os.path.join(ROOT, "var", "sim"), help="state directory (CA, flash, store)")
    r.add_argument("--snmp-port", type=int, default=None, help="UDP port of every simulated printer (default 161)")
    r.add_argument("--http-port", type=int, default=80, help="TCP port of the printers' web pages (default 80)")
    r.add_argument("--https-port", type=int, default=443, help="TCP port of the printers' HTTPS pages (default 443)")
    r.add_argument("--cloud-port", type=int, default=443, help="HTTPS port of liberty and rescue")
    r.add_argument("-v", "--verbose", action="store_true", help="show the box's log")
    r.add_argument("--fault", action="append", type=_fault_arg, metavar="SECONDS:COMMAND",
                   help="inject a fault that many seconds after boot (repeatable):\n" + FAULTS)
    r.add_argument("--watchdog-s", type=float, default=None, help="the sim board's watchdog timeout (board.yaml)")
    r.add_argument("--board", choices=("sim", "qemu-x86_64"), default="sim",
                   help="the box: the sim board (default) or the QEMU appliance (make sim-qemu)")
    r.add_argument("--seeded", action="store_true",
                   help="flash the box with its configuration (default: a factory-fresh box that the "
                        "simulated dealer claims in the cloud, then it provisions itself)")
    r.add_argument("--update", action="store_true",
                   help="after a cycle, sign the next version of this tree, roll it out to the box and follow "
                        "it until the box confirms it (exit 1 if it does not)")
    r.add_argument("--rtc", action="store_true",
                   help="give the sim board an RTC (default: it learns the time from the cloud)")
    r.set_defaults(func=cmd_run)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
