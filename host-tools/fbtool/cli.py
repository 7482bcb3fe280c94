"""fbtool: the firmware engineer's tool — build and flash images, make identities, scan printers."""
import argparse
import json
import os
import sys

from . import paths


def _die(msg, code=2):
    print("fbtool: " + msg, file=sys.stderr)
    return code


def cmd_build(args):
    from . import image
    data = image.build(args.board, args.version)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "wb") as f:
        f.write(data)
    manifest, files = image.parse(data)
    print("built %s: fleetbox %s for board %s, %d files, %d bytes" % (
        args.output, manifest["version"], manifest["board"], len(files), len(data)))
    return 0


def cmd_flash(args):
    from . import flash, image
    if not args.sim:
        return _die("only --sim flash images are supported by this version")
    try:
        with open(args.image, "rb") as f:
            app = f.read()
    except OSError as e:
        return _die("cannot read image %s: %s (run `fbtool build` first)" % (args.image, e.strerror))
    identity = config = None
    try:
        if args.identity:
            with open(args.identity) as f:
                identity = json.load(f)
        if args.config:
            with open(args.config) as f:
                config = json.load(f)
    except (OSError, ValueError) as e:
        return _die("cannot read %s" % e)
    try:
        manifest = flash.write_sim(args.sim, app, args.board, identity, config, args.erase)
    except (image.ImageError, flash.FlashError) as e:
        return _die(str(e))
    print("flashed %s: loader + fleetbox %s in slot_a%s%s" % (
        args.sim, manifest["version"], ", identity" if identity else "", ", config" if config else ""))
    return 0


def cmd_identity(args):
    from . import identity
    ident = identity.new(args.serial, args.kid)
    with open(args.output, "w") as f:
        json.dump(ident, f)
    os.chmod(args.output, 0o600)
    if args.manifest:
        identity.add_to_manifest(args.manifest, ident)
    print("identity %s (kid %d) -> %s%s" % (args.serial, args.kid, args.output,
                                            ", manifest " + args.manifest if args.manifest else ""))
    return 0


def cmd_scan(args):
    from . import scan
    try:
        records, probed = scan.run(args.targets, args.community, args.snmp_version, args.port,
                                   args.exclude or (), args.timeout_ms, args.retries)
    except scan.ScanError as e:
        return _die(str(e))
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        from rich.console import Console
        Console(width=None if sys.stdout.isatty() else 150).print(scan.table(records, "%d printers among %d addresses" % (len(records), probed)))
    return 0


def parser():
    p = argparse.ArgumentParser(prog="fbtool", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="compile the firmware to bytecode and pack an image")
    b.add_argument("-o", "--output", default=os.path.join(paths.BUILD, "firmware.fbi"))
    b.add_argument("--board", default="sim")
    b.add_argument("--version", help="override the version in firmware/fleetbox/version.py")
    b.set_defaults(func=cmd_build)

    f = sub.add_parser("flash", help="write an image into a board's flash")
    f.add_argument("--sim", metavar="FLASH.img", help="the sim board's flash file (created when missing)")
    f.add_argument("--image", default=os.path.join(paths.BUILD, "firmware.fbi"))
    f.add_argument("--board", default="sim")
    f.add_argument("--identity", metavar="FILE", help="factory identity JSON (fbtool identity)")
    f.add_argument("--config", metavar="FILE", help="initial box configuration JSON")
    f.add_argument("--erase", action="store_true", help="erase the whole flash first")
    f.set_defaults(func=cmd_flash)

    i = sub.add_parser("identity", help="create a box's factory identity")
    i.add_argument("serial")
    i.add_argument("-o", "--output", required=True)
    i.add_argument("--kid", type=int, default=1)
    i.add_argument("--manifest", help="append the cloud's copy to this manufacturing manifest")
    i.set_defaults(func=cmd_identity)

    s = sub.add_parser("scan", help="run the firmware's collector once, on MicroPython, against targets")
    s.add_argument("targets", nargs="+", metavar="TARGET", help="ADDR, ADDR:PORT, CIDR or range a.b.c.d-e.f.g.h")
    s.add_argument("--community", default="public")
    s.add_argument("--snmp-version", choices=("1", "2c"), default="2c")
    s.add_argument("--port", type=int, default=161, help="default SNMP port")
    s.add_argument("--exclude", action="append", metavar="TARGET")
    s.add_argument("--timeout-ms", type=int, default=1000)
    s.add_argument("--retries", type=int, default=1)
    s.add_argument("--json", action="store_true", help="print the JSON array of device records")
    s.set_defaults(func=cmd_scan)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
