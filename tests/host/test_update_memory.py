"""A 1 MiB update image installs through the box's verifier (fleetbox.updimage) on
MicroPython with only 64 KB of heap left free: constant memory, whatever the size."""
import hashlib
import json
import os
import subprocess
import sys

from fbtool import keys, updimage
from fbtool.image import compile_mpy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VECTORS = os.path.join(ROOT, "docs", "vectors", "update")
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
SCRIPT = os.path.join(ROOT, "tests", "mp", "update_install.py")
FREE = 64 * 1024


def _image(tmp_path, size):
    payload = os.urandom(size)
    signers = [keys.load_private(os.path.join(VECTORS, n)) for n in ("k2.pem", "k3.pem")]
    data, content_key = updimage.sign(payload, signers, security_counter=1, min_loader=1,
                                      expires=4102444800, board="sim", version="9.0.0", kind="app")
    with open(os.path.join(VECTORS, "expected.json")) as f:
        ident = json.load(f)["identity"]
    wrap = updimage.make_wrap(updimage.Image(data), content_key, ident["serial"], ident["kid"],
                              bytes.fromhex(ident["device_key"]))
    paths = {"mpy": _bytecode(tmp_path)}
    for name, blob in (("image", data), ("wrap", wrap), ("identity", json.dumps(ident).encode())):
        paths[name] = str(tmp_path / name)
        with open(paths[name], "wb") as f:
            f.write(blob)
    return payload, paths


def _bytecode(tmp_path):
    """The modules as the box has them: mpy-cross bytecode (loading source costs heap)."""
    out = tmp_path / "mpy"
    (out / "fleetbox").mkdir(parents=True)
    (out / "fleetbox" / "__init__.py").write_text("")
    for name in ("errors", "port", "rsapss", "keywrap", "updroot", "updimage"):
        arc = "fleetbox/%s.py" % name
        (out / (arc[:-3] + ".mpy")).write_bytes(compile_mpy(os.path.join(ROOT, "firmware", arc), arc))
    return str(out)


def _run(paths, mode, heap):
    return subprocess.run([MICROPYTHON, "-X", "heapsize=%d" % heap, SCRIPT, paths["mpy"], paths["image"],
                           os.path.join(VECTORS, "root-1.fbr"), paths["wrap"], paths["identity"], mode],
                          capture_output=True, text=True, timeout=300)


def _base(paths):
    r = _run(paths, "probe", 1 << 20)
    assert r.returncode == 0, r.stdout + r.stderr
    return int(r.stdout.split()[-1])


def test_one_mebibyte_image_installs_in_64k_of_heap(tmp_path):
    payload, paths = _image(tmp_path, 1 << 20)
    # the heap is what the interpreter, modules and inputs hold plus 64 KB: all the
    # install can have, fragments included
    r = _run(paths, "install", _base(paths) + FREE)
    assert r.returncode == 0, r.stdout + r.stderr
    free = int(r.stdout.split("free ")[1].split()[0])
    assert free <= FREE
    line = r.stdout.strip().splitlines()[-1].split()
    assert line[0] == "ok" and line[1] == hashlib.sha256(payload).hexdigest()
    assert int(line[2]) == 256                      # 4 KiB chunks
    assert int(line[3]) < FREE
    print("1 MiB install on MicroPython in %d free bytes of heap: heap allocated at most %s bytes, "
          "live at most %s bytes" % (free, line[3], line[5]))


def test_too_little_heap_fails_so_the_limit_is_real(tmp_path):
    _, paths = _image(tmp_path, 1 << 20)
    r = _run(paths, "install", _base(paths) + 6 * 1024)   # less than the table and a chunk
    assert r.returncode != 0 and "MemoryError" in r.stdout + r.stderr
