"""MicroPython helper for tests/faults/test_boot_state.py: boot-state writes on the sim board's real flash.

Usage: micropython bootstate_writer.py REPO_ROOT FLASH.img write|check

`write` saves state after state through the sim ROM's block device, exactly as the
loader does, printing "saved N" once each save returned, for the test to SIGKILL at
random. Every field of state N is a function of N, so a torn mix of two states shows.
`check` loads it again and prints one JSON line.
"""
import json
import sys

root, flash_path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, root + "/firmware/loader")
sys.path.insert(0, root + "/board/sim")
import bootstate  # noqa: E402
import rom  # noqa: E402

store = bootstate.Store(rom.Rom(flash_path).partition("bootstate"))


def digest(n):
    return bytes([1 + n % 255]) * 32     # never all zeros: that reads as "no record"


def fill(st, n):
    st.counter = n
    st.active = n & 1
    st.trial = n % 3
    st.crash_boots = n % 4
    st.records[n & 1] = (digest(n), n, "v%d" % n)


def consistent(st):
    n = st.counter
    return (st.active == n & 1 and st.trial == n % 3 and st.crash_boots == n % 4
            and st.records[n & 1] == (digest(n), n, "v%d" % n))


st = store.load()
if mode == "write":
    n = st.counter
    while True:
        n += 1
        fill(st, n)
        store.save(st)
        print("saved", n)
else:
    print(json.dumps({"valid": store.valid, "counter": st.counter, "seq": st.seq,
                      "consistent": st.counter == 0 or consistent(st)}))
