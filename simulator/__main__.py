"""python -m simulator run [--forever]: the box on MicroPython against a simulated site and cloud."""
import argparse
import logging
import os
import sys
import time

from simulator.runner import ROOT, SimError, Simulation


def report(sim, console):
    sys.path.insert(0, os.path.join(ROOT, "host-tools"))
    from fbtool.scan import table
    devices = sim.devices()
    cycles = sim.cycles()
    console.print(table(devices, "What the cloud received from %s: %d printers, %d collection cycles" % (
        sim.serial, len(devices), len(cycles))))


def cmd_run(args):
    from rich.console import Console
    console = Console(width=None if sys.stdout.isatty() else 150)
    logging.basicConfig(level=logging.WARNING, format="cloud: %(message)s")
    sim = Simulation(args.state, snmp_port=args.snmp_port, cloud_port=args.cloud_port, interval=args.interval,
                     echo=console.print if args.verbose else (lambda s: None if s.startswith("  |") else console.print(s)))
    code = 0
    try:
        sim.start()
        if args.forever:
            console.print("running until Ctrl-C (LED and cycles below)")
            last = None
            while True:
                if sim.box.poll() is not None:
                    raise SimError("the box stopped (exit %s)" % sim.box.returncode)
                state = (sim.led(), len(sim.cycles()), len(sim.devices()))
                if state != last:
                    console.print("LED %-15s cycles %3d  printers %d" % state)
                    last = state
                time.sleep(1)
        else:
            sim.wait_cycles(args.cycles, args.timeout)
            console.print("LED: %s" % sim.led())
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
    r = sub.add_parser("run", help="run the whole simulation")
    r.add_argument("--forever", action="store_true", help="keep running until Ctrl-C")
    r.add_argument("--cycles", type=int, default=2, help="collection cycles to wait for (default 2)")
    r.add_argument("--interval", type=int, default=15, help="seconds between collection cycles")
    r.add_argument("--timeout", type=int, default=240, help="give up after this many seconds")
    r.add_argument("--state", default=os.path.join(ROOT, "var", "sim"), help="state directory (CA, flash, store)")
    r.add_argument("--snmp-port", type=int, default=None, help="UDP port of every simulated printer (default 161)")
    r.add_argument("--cloud-port", type=int, default=443, help="HTTPS port of liberty and rescue")
    r.add_argument("-v", "--verbose", action="store_true", help="show the box's log")
    r.set_defaults(func=cmd_run)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
