"""Collection-intelligence packs on the box: the install target on the data partition, the
switch, and the check at every load (docs/update-protocol.md, "Packs").

A pack is a signed update image of kind "pack" (board "any") whose payload is a format-1
image holding profiles.json. fleetbox.updater installs it like firmware, but into one of
two folders of the data partition, /data/pack/a and /data/pack/b, never the one in use.
Once the new folder verifies whole, one atomic rewrite of /data/pack/use.json names it:
a power cut at any instant leaves the old pack or the new one in force, never a mix.
Every load re-checks the pack's signed head against the trust anchor and re-hashes its
files; a pack that fails is logged, reported and the other pack (or the firmware's own
profiles) is used.
"""
import hashlib
import json
import os
import struct
import sys
from binascii import hexlify

from fleetbox import atomicfile, port, profiles

KIND = "pack"
BOARD = "any"
LETTERS = ("a", "b")
POINTER = "use.json"
PROFILES = "profiles.json"
SIG_FILE = "update.sig"        # as fleetbox.updater names them in a finished slot
MANIFEST_FILE = "manifest.json"
MAX_PACK = 64 * 1024
ROOT_FILE = "/loader/root.fbr"
# The newest pack's version and counter, beside the trust anchor: a factory reset wipes the data
# partition (the pack area and its pointer) but not the loader partition, so it cannot reopen
# the way to an older pack.
FLOOR_FILE = "/loader/pack.floor"
BUILTIN = "/app/profiles.json"
# the verifiers a load imports and drops again: a box between installs does not keep their bytecode
_VERIFIERS = ("fleetbox.updater", "fleetbox.updimage", "fleetbox.updroot", "fleetbox.rsapss",
              "fleetbox.keywrap", "fleetbox.https")


def log(level, msg):
    port.log("pack", level, msg)


def _mkdir(path):
    try:
        os.mkdir(path)
    except OSError:
        pass


def verify(path, root):
    """Check the installed pack in folder path whole: its signed head (a threshold of the
    root's image keys, kind pack, board any; expiry is not held against an installed pack),
    then every file and the payload against the signed SHA-256. Returns {"version",
    "counter", "image"}; raises an updimage.UpdateError."""
    from fleetbox import updimage
    with open(path + "/" + SIG_FILE, "rb") as f:
        img = updimage.ImageReader(f.read, root, BOARD)
    m = img.manifest
    if m["kind"] != KIND:
        raise updimage.WrongBoard("image of kind %r where a pack belongs" % m["kind"])
    files = _check_payload(path, img.payload_sha256(), updimage)
    if not [e for e in files if e["path"] == PROFILES]:
        raise updimage.BadFormat("the pack holds no %s" % PROFILES)
    return {"version": m["version"], "counter": m["security_counter"], "image": hexlify(img.digest).decode()}


def _check_payload(path, payload_sha, updimage):
    """The folder's files, in the format-1 layout they were unpacked from (header, manifest,
    each file at its manifest size, tail), against the signed payload SHA-256. Lighter than
    the updater's whole-slot check (its module is not loaded for it): the one signed hash
    covers every byte, the sizes fix where each file ends."""
    with open(path + "/" + MANIFEST_FILE, "rb") as f:
        body = f.read()
    h = hashlib.sha256(b"FBIM" + struct.pack("<HHI", 1, 0, len(body)))
    h.update(body)
    try:
        files = json.loads(body)["files"]
        names = [(e["path"], e["size"]) for e in files]
    except (ValueError, KeyError, TypeError):
        raise updimage.BadFormat("the pack's manifest is not usable")
    buf = bytearray(512)
    mv = memoryview(buf)
    for name, size in names + [("payload.tail", 32)]:
        n = 0
        with open(path + "/" + name, "rb") as f:
            while True:
                got = f.readinto(buf)
                if not got:
                    break
                h.update(mv[:got])
                n += got
        if n != size:
            raise updimage.BadChunk("installed %s has %d bytes, its manifest says %d" % (name, n, size))
    if h.digest() != payload_sha:
        raise updimage.BadChunk("installed pack does not match the signed payload SHA-256")
    return files


class PackArea:
    """The updater's install target for a pack: a folder of the data partition (a slot is
    a partition; both are formatted fresh and written by fleetbox.updater.SlotWriter)."""
    kind = KIND

    def __init__(self, packs_dir, letter):
        self.letter = letter
        self.name = "pack_" + letter
        self.path = packs_dir + "/" + letter
        self.size = MAX_PACK

    def mount(self, fresh=False):
        if fresh:
            port.remove_tree(self.path)     # a target that cannot be emptied is not written: the install is interrupted
        _mkdir(self.path)

    def umount(self):
        pass


class Packs:
    """Which pack is in force. load() gives the profile library; target() the folder an
    install may write (never the one in use); switch() puts a verified pack in force."""

    def __init__(self, data_dir, builtin=BUILTIN, root_file=None, floor_file=FLOOR_FILE):
        self.dir = data_dir + "/pack"
        self.builtin = builtin
        self.root_file = root_file or ROOT_FILE
        self.floor_file = floor_file
        self.in_use = None       # letter of the pack in force; None: the firmware's own profiles
        self.in_use_version = None
        self.version = "0"       # the newest pack installed and its counter: installs never go below
        self.counter = 0
        self.problems = []       # reports for the update service: packs that failed their check
        self.changed = False     # a new pack was switched in: load() again before the next cycle

    def _pointer(self):
        try:
            with open(self.dir + "/" + POINTER) as f:
                p = json.load(f)
            if p["use"] in LETTERS and isinstance(p["counter"], int) and isinstance(p["version"], str):
                return p
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def _root(self):
        # the newest root the box accepted (a rotation beside the anchor), as the updater uses
        from fleetbox import updroot
        return updroot.trusted_root(self.root_file, self.root_file.rsplit("/", 1)[0] + "/rotated.fbr",
                                    lambda m: log(port.WARN, m))

    def load(self):
        """The profile library in force (a profiles.Library, or [] when nothing loads)."""
        self.changed = False
        before = set(m for m in _VERIFIERS if m in sys.modules)
        try:
            lib = self._load_pack()
        finally:
            pkg = sys.modules.get("fleetbox")
            for m in _VERIFIERS:
                if m not in before and m in sys.modules:
                    del sys.modules[m]
                    if hasattr(pkg, m[9:]):
                        delattr(pkg, m[9:])      # the package holds its submodules too
        if lib is not None:
            return lib
        try:
            return profiles.load([self.builtin])
        except (profiles.ProfileError, ValueError, OSError) as e:     # ValueError: not even text
            log(port.WARN, "profiles unusable, standard MIBs only: %s" % e)
            return []

    def _load_pack(self):
        ptr = self._pointer()
        if ptr:
            order = [ptr["use"], LETTERS[1 - LETTERS.index(ptr["use"])]]
            self.version, self.counter = ptr["version"], ptr["counter"]
        else:
            order = list(LETTERS)       # no pointer (never installed, or damaged): the newest that verifies
        order = [x for x in order if port.exists(self.dir + "/" + x + "/" + SIG_FILE)]
        self.in_use = self.in_use_version = None
        if not order:
            return None         # no pack installed: nothing to verify, no verifier imported
        from fleetbox.updimage import UpdateError, parse_version
        try:
            root = self._root()
        except (OSError, UpdateError) as e:
            log(port.ERROR, "packs not usable: no trust anchor to check them (%r)" % e)
            return None
        best = None
        for letter in order:
            path = self.dir + "/" + letter
            try:
                info = verify(path, root)
                lib = profiles.load([path + "/" + PROFILES])
                if not len(lib):
                    raise profiles.ProfileError("no profiles in it")
            except (UpdateError, profiles.ProfileError, OSError, ValueError, KeyError, TypeError) as e:
                reason = getattr(e, "reason", "bad_format")
                log(port.ERROR, "pack in %s refused at load [%s]: %s" % (letter, reason, e))
                if ptr and letter == ptr["use"] and isinstance(ptr.get("rollout"), int):
                    self.problems.append({"rollout": ptr["rollout"], "image": ptr.get("image"), "state": "reverted",
                                          "reason": reason, "detail": ("pack on flash: %s" % e)[:200]})
                continue
            if best is None or parse_version(info["version"]) > parse_version(best[1]["version"]):
                best = letter, info, lib
            if ptr:
                break       # the pointer's pack, else the one before it
        if best is None:
            log(port.WARN, "no pack verifies: the firmware's own profiles are used")
            return None
        letter, info, lib = best
        self.in_use, self.in_use_version = letter, info["version"]
        if parse_version(info["version"]) > parse_version(self.version):
            self.version = info["version"]
        self.counter = max(self.counter, info["counter"])
        log(port.INFO, "profiles: pack %s (%d profiles) from %s" % (info["version"], len(lib), letter))
        return lib

    def target(self):
        """Where the next pack is written: the folder not in force."""
        use = self.in_use or (self._pointer() or {}).get("use")
        return PackArea(self.dir, LETTERS[1 - LETTERS.index(use)] if use in LETTERS else LETTERS[0])

    def floor(self):
        """(version, counter) of the newest pack this box ever installed, as the loader partition
        keeps it; None when it keeps none (installed before the floor was kept, or unreadable)."""
        f = atomicfile.read_json(self.floor_file)
        if f and isinstance(f.get("version"), str) and isinstance(f.get("counter"), int):
            return f["version"], f["counter"]
        return None

    def _raise_floor(self, version, counter):
        # before the pointer names the new pack: the floor never lags the pack in force (a cut
        # between the two leaves the floor at the new pack, whose install the next offer completes:
        # an equal version and counter are allowed)
        floor = self.floor()
        if floor and floor[1] > counter:
            counter = floor[1]
        if floor != (version, counter):
            atomicfile.atomic_write(self.floor_file, json.dumps({"version": version, "counter": counter}))

    def installer(self, root, identity, state_dir, loader_version, min_time, rollout):
        """A fleetbox.updater.Installer for a pack offer: board "any", versions and counter
        never below the newest pack installed, here or before a factory reset (the floor),
        switch() as its last step."""
        from fleetbox import updater
        from fleetbox.updimage import parse_version
        version, counter = self.version, self.counter
        floor = self.floor()
        if floor:
            if parse_version(floor[0]) > parse_version(version):
                version = floor[0]
            counter = max(counter, floor[1])
        _mkdir(self.dir)
        return updater.Installer(root, identity, self.target(), state_dir, BOARD, version, counter,
                                 loader_version, min_time,
                                 stage=lambda name, info: self.switch(name, info, root, rollout))

    def switch(self, name, info, root, rollout=None):
        """Put the pack installed in folder name in force: checked whole first, exactly as a
        load checks it, then one atomic rewrite of the pointer."""
        letter = name[len("pack_"):]
        path = self.dir + "/" + letter
        checked = verify(path, root)
        try:
            n = len(profiles.load([path + "/" + PROFILES]))
        except (profiles.ProfileError, ValueError) as e:
            from fleetbox.updimage import BadFormat
            raise BadFormat("the pack's profiles do not load: %s" % e)
        counter = max(self.counter, checked["counter"])
        self._raise_floor(checked["version"], counter)
        atomicfile.atomic_write(self.dir + "/" + POINTER, json.dumps(
            {"use": letter, "version": checked["version"], "counter": counter,
             "rollout": rollout, "image": checked["image"]}))
        self.version, self.counter = checked["version"], counter
        self.changed = True
        log(port.INFO, "pack %s (%d profiles) installed in %s: in force from the next cycle"
            % (checked["version"], n, letter))
