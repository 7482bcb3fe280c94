"""The firmware unit tests of tests/firmware/ again, on the real MicroPython runtime.

Each module's test_* functions also run under pytest on CPython (collected directly).
"""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
MODULES = sorted(glob.glob(os.path.join(ROOT, "tests", "firmware", "test_*.py")))


@pytest.mark.parametrize("path", MODULES, ids=[os.path.basename(p) for p in MODULES])
def test_module_on_micropython(path):
    r = subprocess.run([MICROPYTHON, "-X", "heapsize=2M", os.path.join(ROOT, "tests", "mprun.py"), ROOT, path],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
