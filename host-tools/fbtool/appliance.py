"""fbtool appliance: the qemu-x86_64 board's kernel and initramfs, from pinned Debian packages.

The packages (board/qemu-x86_64/packages.lock) are fetched with apt-get through a private
apt state directory (its own sources list, lists and cache under build/qemu-x86_64/apt),
checked against their pinned SHA-256 and unpacked with dpkg-deb -x: nothing is installed
on the host. The initramfs holds the MicroPython binary, the libraries it links, the
kernel modules the ROM loads and the ROM itself as /init, nothing else; it is written
byte-for-byte reproducibly (fixed order, owners, times and inode numbers; gzip without
a time stamp), and its contents are listed with their hashes in appliance.json.
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess

import yaml

from . import paths
from .errors import FatalError

BOARD = "qemu-x86_64"
MULTIARCH = "usr/lib/x86_64-linux-gnu"
# What MicroPython needs at run time: the binary, the dynamic loader and the sonames it links.
RUNTIME_FILES = (
    ("micropython", "usr/bin/micropython", 0o755),
    ("libc6", MULTIARCH + "/ld-linux-x86-64.so.2", 0o755),   # the kernel runs it as the ELF interpreter
    ("libc6", MULTIARCH + "/libc.so.6", 0o644),
    ("libc6", MULTIARCH + "/libm.so.6", 0o644),
    ("libffi8", MULTIARCH + "/libffi.so.8", 0o644),
    ("libmbedcrypto16", MULTIARCH + "/libmbedcrypto.so.16", 0o644),
    ("libmbedtls21", MULTIARCH + "/libmbedtls.so.21", 0o644),
    ("libmbedx509-7", MULTIARCH + "/libmbedx509.so.7", 0o644),
)
DIRS = ("dev", "etc", "proc", "sys", "tmp", "usr", "usr/bin", "usr/lib", MULTIARCH, "usr/lib/modules")
SYMLINKS = (("lib64", MULTIARCH), ("lib", "usr/lib"))   # PT_INTERP is /lib64/ld-linux-x86-64.so.2
MODULE_DIR = "usr/lib/modules"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SUITES = {
    "bookworm": ["http://deb.debian.org/debian bookworm main",
                 "http://deb.debian.org/debian-security bookworm-security main"],
    "trixie": ["http://deb.debian.org/debian trixie main"],
}


class ApplianceError(FatalError):
    pass


def board_yaml():
    with open(os.path.join(paths.board_dir(BOARD), "board.yaml")) as f:
        return yaml.safe_load(f)


def read_lock(path=None):
    """[(suite, package, version, sha256)] from packages.lock."""
    path = path or os.path.join(paths.board_dir(BOARD), "packages.lock")
    out = []
    with open(path) as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) != 4 or len(words[3]) != 64:
                raise ApplianceError("packages.lock: bad line %r" % line.strip())
            out.append(tuple(words))
    return out


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class PrivateApt:
    """apt-get with its own sources, lists and cache: reads Debian's archive, installs nothing."""

    def __init__(self, root):
        self.root = root
        for d in ("etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d", "state/lists/partial",
                  "cache/archives/partial"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        sources = "".join("deb [signed-by=%s] %s\n" % (DEBIAN_KEYRING, s) for suite in sorted(SUITES)
                          for s in SUITES[suite])
        with open(os.path.join(root, "etc", "sources.list"), "w") as f:
            f.write(sources)
        status = os.path.join(root, "state", "status")
        if not os.path.exists(status):
            open(status, "w").close()
        self.options = []
        for k, v in (("Dir::Etc", "etc"), ("Dir::State", "state"), ("Dir::State::status", "state/status"),
                     ("Dir::Cache", "cache")):
            self.options += ["-o", "%s=%s" % (k, os.path.join(root, v))]
        self.options += ["-o", "APT::Architecture=amd64", "-o", "Debug::NoLocking=1", "-q"]
        self.updated = False

    def run(self, *args, cwd=None):
        r = subprocess.run(["apt-get"] + self.options + list(args), cwd=cwd, capture_output=True, text=True)
        if r.returncode != 0:
            raise ApplianceError("apt-get %s failed: %s" % (args[0], (r.stderr or r.stdout).strip()[-800:]))

    def download(self, package, version, dest):
        if not self.updated:
            self.run("update")
            self.updated = True
        self.run("download", "%s=%s" % (package, version), cwd=dest)


def fetch(work, echo=print):
    """The pinned .deb files, from the cache under work/debs or downloaded; {package: path}."""
    debs = os.path.join(work, "debs")
    os.makedirs(debs, exist_ok=True)
    apt = None
    out = {}
    for suite, package, version, digest in read_lock():
        name = "%s_%s_amd64.deb" % (package, version.split(":")[-1])
        path = os.path.join(debs, name)
        if not (os.path.exists(path) and _sha256_file(path) == digest):
            apt = apt or PrivateApt(os.path.join(work, "apt"))
            echo("fetching %s %s (%s)" % (package, version, suite))
            apt.download(package, version, debs)
            # apt-get names files with the version's epoch encoded; find what it wrote
            if not os.path.exists(path):
                raise ApplianceError("apt-get download %s=%s wrote no %s" % (package, version, name))
        got = _sha256_file(path)
        if got != digest:
            raise ApplianceError("%s: SHA-256 %s, packages.lock pins %s" % (name, got, digest))
        out[package] = path
    return out


def unpack(debs, work):
    """dpkg-deb -x each package into work/unpack/PACKAGE; {package: directory}."""
    out = {}
    for package, deb in debs.items():
        d = os.path.join(work, "unpack", package)
        stamp = os.path.join(d, ".from")
        if not (os.path.exists(stamp) and open(stamp).read() == os.path.basename(deb)):
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            r = subprocess.run(["dpkg-deb", "-x", deb, d], capture_output=True, text=True)
            if r.returncode != 0:
                raise ApplianceError("dpkg-deb -x %s: %s" % (deb, r.stderr.strip()))
            with open(stamp, "w") as f:
                f.write(os.path.basename(deb))
        out[package] = d
    return out


def _read_resolved(root, rel):
    """A file of an unpacked package, following its symlinks inside the package."""
    path = os.path.join(root, rel)
    for _ in range(8):
        if not os.path.islink(path):
            break
        target = os.readlink(path)
        path = os.path.join(root, target.lstrip("/")) if target.startswith("/") else \
            os.path.join(os.path.dirname(path), target)
    with open(path, "rb") as f:
        return f.read()


def contents(board, trees):
    """The initramfs as [(path, mode, bytes or symlink target or (major, minor))], sorted by path."""
    kernel_pkg = "linux-image-" + board["kernel"]["version"]
    entries = [(d, stat.S_IFDIR | 0o755, None) for d in DIRS]
    entries.append(("dev/console", stat.S_IFCHR | 0o600, (5, 1)))   # the kernel opens it for /init
    entries += [(link, stat.S_IFLNK | 0o777, target) for link, target in SYMLINKS]
    for package, rel, mode in RUNTIME_FILES:
        entries.append((rel, stat.S_IFREG | mode, _read_resolved(trees[package], rel)))
    mods = os.path.join(trees[kernel_pkg], "lib", "modules", board["kernel"]["version"])
    for i, rel in enumerate(board["kernel"]["modules"]):
        name = "%s/%02d-%s" % (MODULE_DIR, i + 1, os.path.basename(rel))
        entries.append((name, stat.S_IFREG | 0o644, _read_resolved(mods, rel)))
    with open(os.path.join(paths.board_dir(BOARD), "rom.py"), "rb") as f:
        rom = f.read()
    if not rom.startswith(b"#!/usr/bin/micropython\n"):
        raise ApplianceError("board/%s/rom.py must start with #!/usr/bin/micropython" % BOARD)
    entries.append(("init", stat.S_IFREG | 0o755, rom))
    return sorted(entries, key=lambda e: e[0])


def cpio(entries):
    """A newc cpio archive of entries: owner root, time 0, inodes numbered in order."""
    out = io.BytesIO()

    def put(ino, name, mode, data, nlink=1, rdev=(0, 0)):
        name_b = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0)
        out.write(b"070701" + b"".join(b"%08X" % v for v in fields) + name_b)
        out.write(b"\0" * (-out.tell() % 4))
        out.write(data)
        out.write(b"\0" * (-out.tell() % 4))

    for ino, (name, mode, value) in enumerate(entries, 1):
        if stat.S_ISDIR(mode):
            put(ino, name, mode, b"", nlink=2)
        elif stat.S_ISLNK(mode):
            put(ino, name, mode, value.encode())
        elif stat.S_ISCHR(mode):
            put(ino, name, mode, b"", rdev=value)
        else:
            put(ino, name, mode, value)
    put(0, "TRAILER!!!", 0, b"")
    return out.getvalue()


def _gzip(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buf, mtime=0) as g:
        g.write(data)
    return buf.getvalue()


def listing(entries):
    """One dict per initramfs entry: path, mode (octal), size, sha256 or target."""
    out = []
    for name, mode, value in entries:
        e = {"path": "/" + name, "mode": "%o" % mode}
        if stat.S_ISREG(mode):
            e.update(size=len(value), sha256=hashlib.sha256(value).hexdigest())
        elif stat.S_ISLNK(mode):
            e["target"] = value
        elif stat.S_ISCHR(mode):
            e["device"] = "%d:%d" % value
        out.append(e)
    return out


def build(out_dir, work=None, echo=print):
    """Write vmlinuz, initramfs.cpio.gz and appliance.json into out_dir; returns the manifest."""
    work = work or os.path.join(paths.BUILD, BOARD)
    board = board_yaml()
    trees = unpack(fetch(work, echo), work)
    kpkg = "linux-image-" + board["kernel"]["version"]
    with open(os.path.join(trees[kpkg], "boot", "vmlinuz-" + board["kernel"]["version"]), "rb") as f:
        kernel = f.read()
    entries = contents(board, trees)
    initramfs = _gzip(cpio(entries))
    os.makedirs(out_dir, exist_ok=True)
    manifest = {
        "board": BOARD,
        "cmdline": board["kernel"]["cmdline"],
        "kernel": {"file": "vmlinuz", "version": board["kernel"]["version"], "size": len(kernel),
                   "sha256": hashlib.sha256(kernel).hexdigest()},
        "initramfs": {"file": "initramfs.cpio.gz", "size": len(initramfs),
                      "sha256": hashlib.sha256(initramfs).hexdigest()},
        "packages": [{"suite": s, "package": p, "version": v, "sha256": d} for s, p, v, d in read_lock()],
        "contents": listing(entries),
    }
    for name, data in (("vmlinuz", kernel), ("initramfs.cpio.gz", initramfs),
                       ("appliance.json", json.dumps(manifest, indent=1, sort_keys=True).encode() + b"\n")):
        tmp = os.path.join(out_dir, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(out_dir, name))
    return manifest


def executables(manifest):
    """Paths of the image's regular files that the kernel would run (any execute bit)."""
    return [e["path"] for e in manifest["contents"]
            if "sha256" in e and int(e["mode"], 8) & 0o111]


def cmd_appliance(args):
    m = build(args.output)
    if args.list:
        for e in m["contents"]:
            what = e.get("sha256", e.get("target", e.get("device", "")))
            print("%-8s %9s  %s  %s" % (e["mode"], e.get("size", ""), what, e["path"]))
    print("appliance %s: kernel %s (%d bytes, sha256 %s), initramfs %d entries (%d bytes, sha256 %s)" % (
        args.output, m["kernel"]["version"], m["kernel"]["size"], m["kernel"]["sha256"][:16],
        len(m["contents"]), m["initramfs"]["size"], m["initramfs"]["sha256"][:16]))
    print("executables: %s; kernel command line: %s" % (", ".join(executables(m)), m["cmdline"]))
    return 0


def register(subparsers):
    a = subparsers.add_parser("appliance", help="the qemu-x86_64 board's kernel and initramfs, "
                              "from the Debian packages pinned in board/qemu-x86_64/packages.lock")
    a.add_argument("-o", "--output", default=os.path.join(paths.BUILD, BOARD, "appliance"))
    a.add_argument("--list", action="store_true", help="list the initramfs with each file's SHA-256")
    a.set_defaults(func=cmd_appliance)
