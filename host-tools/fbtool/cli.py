"""fbtool: the firmware engineer's tool — build and flash images, make identities, scan printers."""
import argparse
import json
import os
import sys
import traceback

from . import paths
from .errors import FatalError, os_problem


def _die(msg, code=2):
    print("fbtool: error: " + msg, file=sys.stderr)
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
    from . import flash
    target = args.sim or args.raw
    if not target or (args.sim and args.raw):
        return _die("give one of --sim FLASH.img (the sim board) or --raw OUT.bin (any board's whole flash)")
    if args.sim and args.board != "sim":
        return _die("--sim is the sim board's flash; use --raw OUT.bin for board %s" % args.board)
    runtime = None
    try:
        if args.micropython:
            with open(args.micropython, "rb") as f:
                runtime = f.read()
    except OSError as e:
        return _die("cannot read %s: %s" % (args.micropython, e.strerror))
    try:
        with open(args.image, "rb") as f:
            app = f.read()
    except OSError as e:
        return _die("cannot read image %s: %s (run `fbtool build` first)" % (args.image, e.strerror))
    identity = config = root = None
    try:
        if args.root:
            with open(args.root, "rb") as f:
                root = f.read()
        if args.identity:
            with open(args.identity) as f:
                identity = json.load(f)
        if args.config:
            with open(args.config) as f:
                config = json.load(f)
    except (OSError, ValueError) as e:
        return _die("cannot read %s" % e)
    manifest = flash.write_sim(target, app, args.board, identity, config, args.erase, runtime, root)
    print("flashed %s: loader + fleetbox %s in slot_a%s%s%s" % (
        target, manifest["version"], ", identity" if identity else "", ", config" if config else "",
        ", MicroPython" if runtime else ""))
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


def _web_ports(specs):
    """--web-port 80=8080 (repeatable) -> {"80": 8080}: where printers' web pages are served."""
    out = {}
    for spec in specs:
        a, _, b = spec.partition("=")
        if not (a.isdigit() and b.isdigit() and 0 < int(b) < 65536):
            raise FatalError("--web-port wants PROFILE_PORT=PORT, got %r" % spec, hint="e.g. --web-port 80=8080")
        out[str(int(a))] = int(b)
    return out


def cmd_scan(args):
    from . import scan
    if args.capture:
        return cmd_capture(args)
    records, probed = scan.run(args.targets, args.community, args.snmp_version, args.port,
                               args.exclude or (), args.timeout_ms, args.retries,
                               v3=args.v3, context=args.context, kind=args.kind,
                               web_ports=_web_ports(args.web_port or ()), verbose=args.verbose)
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        from rich.console import Console
        title = "%d printers among %d addresses" % (len(records), probed)
        Console(width=None if sys.stdout.isatty() else 150).print(scan.table(records, title))
    return 0


def cmd_capture(args):
    from . import capture
    from .scan import targets   # scan.py puts the firmware on sys.path: the box's own parser
    if len(args.targets) != 1 or targets.count(args.targets, (), args.port) != 1:
        return _die("--capture walks exactly one device: give one ADDR or ADDR:PORT")
    host, port = next(targets.expand(args.targets, (), args.port))
    lines = capture.capture(host, port, args.community, args.snmp_version or "2c",
                            args.timeout_ms / 1000, args.retries)
    capture.write(args.capture, lines)
    print("captured %d objects of %s:%d -> %s" % (len(lines), host, port, args.capture))
    return 0


def cmd_profiles(args):
    from . import profiles
    data = profiles.compile_to(args.output, args.source)
    n = len(profiles.compile_dir(args.source)["profiles"])
    print("compiled %d profiles from %s -> %s (%d bytes)" % (n, args.source, args.output, len(data)))
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
    f.add_argument("--raw", metavar="OUT.bin", help="write the board's whole flash as a raw image "
                   "(for esptool write_flash 0x0 or a programmer)")
    f.add_argument("--micropython", metavar="FW.bin", help="esp32-poe: MicroPython's ESP32_GENERIC image, "
                   "put at the bootloader offset (0x1000)")
    f.add_argument("--board", default="sim")
    f.add_argument("--identity", metavar="FILE", help="factory identity JSON (fbtool identity)")
    f.add_argument("--config", metavar="FILE", help="initial box configuration JSON")
    f.add_argument("--erase", action="store_true", help="erase the whole flash first")
    f.add_argument("--root", metavar="ROOT.fbr", help="the update trust anchor (fbtool root init): the loader "
                   "then boots only signed slots (slot A by the record written here) and carries the rescue client")
    f.set_defaults(func=cmd_flash)

    i = sub.add_parser("identity", help="create a box's factory identity")
    i.add_argument("serial")
    i.add_argument("-o", "--output", required=True)
    i.add_argument("--kid", type=int, default=1)
    i.add_argument("--manifest", help="append the cloud's copy to this manufacturing manifest")
    i.set_defaults(func=cmd_identity)

    s = sub.add_parser("scan", help="run the firmware's collector once, on MicroPython, against targets")
    s.add_argument("targets", nargs="+", metavar="TARGET",
                   help="ADDR, ADDR:PORT, CIDR, range a.b.c.d-e.f.g.h or host name "
                   "(printer.local[:PORT], resolved when reached)")
    s.add_argument("--community", default="public")
    s.add_argument("--snmp-version", choices=("1", "2c", "3"), default=None,
                   help="2c unless --v3 is given")
    s.add_argument("--v3", metavar="USER:AUTHPROTO:AUTHPASS:PRIVPROTO:PRIVPASS",
                   help="SNMPv3 user; AUTHPROTO MD5|SHA|SHA224|SHA256|SHA384|SHA512, PRIVPROTO "
                        "AES|AES192|AES256; omit PRIV for authNoPriv, AUTH too for noAuthNoPriv")
    s.add_argument("--context", metavar="NAME", help="SNMPv3 context name (e.g. Toshiba MFP)")
    s.add_argument("--port", type=int, default=161, help="default SNMP port")
    s.add_argument("--exclude", action="append", metavar="TARGET")
    s.add_argument("--timeout-ms", type=int, default=1000)
    s.add_argument("--retries", type=int, default=1)
    s.add_argument("--json", action="store_true", help="print the JSON array of device records")
    s.add_argument("--web-port", action="append", metavar="PORT=PORT",
                   help="reach printers' web pages that profiles put on PORT at another port (e.g. 80=8080)")
    s.add_argument("--kind", default="full",
                   choices=("discovery", "full", "counters", "supplies", "parts", "alerts"),
                   help="scan kind: what is read besides identification (default full)")
    s.add_argument("--capture", metavar="FILE",
                   help="write the raw walk of ONE device to FILE in .snmprec form (onboarding)")
    s.add_argument("-v", "--verbose", action="count", default=0,
                   help="show the box's log on stderr (-v: info and up, -vv: debug too)")
    s.set_defaults(func=cmd_scan)

    pr = sub.add_parser("profiles", help="vendor profiles: compile profiles/*.yaml for the box")
    prs = pr.add_subparsers(dest="action", required=True)
    pc = prs.add_parser("compile", help="compile the YAML profiles into the box's compact file")
    pc.add_argument("-o", "--output", default=os.path.join(paths.BUILD, "profiles.json"))
    pc.add_argument("--source", default=os.path.join(paths.ROOT, "profiles"), help="folder of *.yaml")
    pc.set_defaults(func=cmd_profiles)

    from . import appliance, cloudcli, pack, signcli, updatecli
    pack.register(sub)        # pack build: the profiles as an update payload (docs/update-image.md)
    cloudcli.register(sub)    # factory identity; claim, configure, revoke (docs/provisioning.md)
    signcli.register(sub)     # keygen, root, image: signed updates (docs/update-image.md)
    updatecli.register(sub)   # update publish|status: the cloud's update service
    appliance.register(sub)   # the qemu-x86_64 board's kernel + initramfs
    _add_debug(p)
    return p


def _add_debug(p, top=True):
    """--debug before or after the command name, on every (sub)command."""
    p.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="show the traceback of an error" if top else argparse.SUPPRESS)
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sp in set(action.choices.values()):
                _add_debug(sp, top=False)


def main(argv=None):
    """The one place fbtool's errors are caught: one line on stderr, exit status 2;
    the traceback (and a subprocess's output) only with --debug."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except FatalError as e:
        return _fatal(args, e)
    except OSError as e:
        if e.filename is None:
            raise
        return _fatal(args, FatalError(os_problem(e, "cannot use")))


def _fatal(args, err):
    if args.debug:
        traceback.print_exc()
        if err.detail:
            print(err.detail, file=sys.stderr)
    return _die(err.line(), err.exit_code)


if __name__ == "__main__":
    sys.exit(main())
