"""Collection-intelligence packs: the compiled vendor profiles as a format-1 image of kind
"pack" for board "any", versioned apart from the firmware (docs/update-image.md, "Packs").
`fbtool image sign` turns it into a signed update image like any other payload."""
import os

from . import image, paths
from .errors import FatalError

KIND = "pack"
BOARD = "any"            # profiles know printers, not boards: one pack serves every board
PROFILES = "profiles.json"
MAX_PACK = 64 * 1024     # the box's pack area takes no more (fleetbox.pack.MAX_PACK)


class PackError(FatalError):
    pass


def check_version(version):
    parts = version.split(".")
    if not version or not all(p.isdigit() for p in parts) or len(version) > 20:
        raise PackError("pack version %r: want dotted integers (e.g. 3 or 2026.11.1), at most 20 characters"
                        % version)
    return version


def build(version, source=None, created=None):
    """(format-1 image bytes, number of profiles) of the profiles compiled from source/*.yaml."""
    from . import profiles
    compiled = profiles.compile_dir(source or os.path.join(paths.ROOT, "profiles"))
    data = profiles.dumps(compiled)
    if len(data) > MAX_PACK:
        raise PackError("compiled profiles of %d bytes: the box's pack area takes %d" % (len(data), MAX_PACK))
    return image.pack_files(KIND, BOARD, check_version(version), [(PROFILES, data)], created), \
        len(compiled["profiles"])


def cmd_pack(args):
    data, n = build(args.version, args.source)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "wb") as f:
        f.write(data)
    print("built pack %s: %d profiles, version %s, board %s, %d bytes; sign it with `fbtool image sign`"
          % (args.output, n, args.version, BOARD, len(data)))
    return 0


def register(sub):
    p = sub.add_parser("pack", help="collection-intelligence packs: the compiled profiles as an update payload")
    ps = p.add_subparsers(dest="action", required=True)
    b = ps.add_parser("build", help="compile profiles/*.yaml into a pack (a format-1 image of kind pack)")
    b.add_argument("-o", "--output", default=os.path.join(paths.BUILD, "profiles.fbi"))
    b.add_argument("--version", required=True, help="the pack's version, dotted integers; "
                   "boxes never install one below the version they have")
    b.add_argument("--source", default=os.path.join(paths.ROOT, "profiles"), help="folder of *.yaml")
    b.set_defaults(func=cmd_pack)
