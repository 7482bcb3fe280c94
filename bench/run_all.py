"""Run every benchmark under bench/<area>/ and print their figures, one area after another.

Benchmarks compare side by side with their peer in the same run and print ratios;
they are not tests and assert nothing about speed. Files starting with "_" are helpers.
Usage: .venv/bin/python bench/run_all.py [AREA ...]
"""
import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(areas):
    scripts = sorted(glob.glob(os.path.join(HERE, "*", "*.py")))
    failed = 0
    for script in scripts:
        area = os.path.basename(os.path.dirname(script))
        name = os.path.basename(script)
        if name.startswith("_") or (areas and area not in areas):
            continue
        print("=== %s/%s" % (area, name), flush=True)
        r = subprocess.run([sys.executable, script], cwd=os.path.dirname(HERE))
        if r.returncode:
            print("!!! %s/%s exited %d" % (area, name, r.returncode), flush=True)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
