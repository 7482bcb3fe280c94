"""The rules the box's code lives by, checked on its source (ruff cannot express them).

Firmware and board code run on MicroPython: only modules MicroPython has, no f-strings
(the code formats with %), nothing that runs code from data, no listening socket.
fleetbox/port.py is the one module allowed CPython-only imports (behind its runtime check).
"""
import ast
import glob
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = sorted(glob.glob(os.path.join(ROOT, "firmware", "**", "*.py"), recursive=True)
                 + glob.glob(os.path.join(ROOT, "board", "**", "*.py"), recursive=True))
PORT_LAYER = os.path.join("firmware", "fleetbox", "port.py")

# What MicroPython's ports provide (the unix port, esp32, and what the ROM/board expose).
MICROPYTHON_MODULES = {
    "array", "asyncio", "binascii", "builtins", "collections", "cryptolib", "deflate", "errno",
    "esp32", "ffi", "gc", "hashlib", "io", "json", "machine", "math", "micropython", "network",
    "os", "random", "re", "select", "socket", "struct", "sys", "time", "tls", "uctypes", "vfs",
    # the box's own: the ROM's module, the loader and its boot state, the board layer (the
    # qemu board's DHCP client beside it), the application; rescue: the loader's rescue client
    "rom", "boot", "bootstate", "rescue", "board", "hal", "dhcp", "fleetbox",
}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_METHODS = {"listen", "accept", "system", "popen"}


def _rel(path):
    return os.path.relpath(path, ROOT)


def _problems(path):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    rel = _rel(path)
    for node in ast.walk(tree):
        where = "%s:%d" % (rel, getattr(node, "lineno", 0))
        if isinstance(node, ast.JoinedStr):
            yield where + ": f-string (the firmware formats with %)"
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and rel != PORT_LAYER:
            if isinstance(node, ast.ImportFrom) and node.level:
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                if name.split(".")[0] not in MICROPYTHON_MODULES:
                    yield where + ": imports %s, which MicroPython does not have" % name
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in FORBIDDEN_CALLS:
                yield where + ": calls %s() (no code from data on the box)" % f.id
            if isinstance(f, ast.Attribute) and f.attr in FORBIDDEN_METHODS:
                yield where + ": calls .%s() (the box opens no listening socket and runs no program)" % f.attr


@pytest.mark.parametrize("path", SOURCES, ids=[_rel(p) for p in SOURCES])
def test_firmware_source_follows_the_box_rules(path):
    assert list(_problems(path)) == []


def test_the_checker_sees_each_kind_of_problem(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('import typing\nx = f"{1}"\neval("1")\ns.listen(1)\nos.system("sh")\n')
    found = " ".join(_problems(str(bad)))
    for what in ("typing", "f-string", "eval()", ".listen()", ".system()"):
        assert what in found
