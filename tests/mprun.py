"""Run one firmware test module under MicroPython: every top-level test_* function.

Usage: micropython tests/mprun.py REPO_ROOT tests/firmware/test_x.py
Prints one line per test and exits 1 if any failed, so pytest can drive it.
"""
import sys

root = sys.argv[1]
path = sys.argv[2]
sys.path.insert(0, root + "/firmware")
sys.path.insert(0, root + "/tests/firmware")
sys.path.insert(0, root)
name = path.rsplit("/", 1)[-1][:-3]
mod = __import__(name)
failed = 0
count = 0
only = sys.argv[3] if len(sys.argv) > 3 else None
for attr in sorted(dir(mod)):
    if not attr.startswith("test_") or (only and attr != only):
        continue
    fn = getattr(mod, attr)
    if not callable(fn):
        continue
    count += 1
    try:
        fn()
        print("PASS", attr)
    except Exception as e:
        failed += 1
        print("FAIL", attr, repr(e))
        sys.print_exception(e)
print("%d passed, %d failed" % (count - failed, failed))
sys.exit(1 if failed or not count else 0)
