"""Device memory at its bound, on the real MicroPython: a full 512-entry file of realistic
entries (docs/collection.md "Device memory") loads in the heap its modules hold plus
DATA_HEAP, where parsing the file whole (the loader before) runs out of memory; and
esp32-poe's bound (board.yaml hardware.device_memory) fits its 16 KB budget on a 32-bit board."""
import json
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "host-tools"), os.path.join(ROOT, "tests", "firmware")]
from devmem_files import realistic  # noqa: E402
from tests.update_kit import bytecode  # noqa: E402

MP = os.path.join(os.path.dirname(sys.executable), "micropython")
DATA_HEAP = 160 * 1024      # held 512 entries (~115 KB on this 64-bit port), the table and one entry's buffers
ESP32_BUDGET = 16 * 1024    # docs/collection.md "Device memory": esp32-poe's share of its heap

MP_LOAD = r"""
import gc, sys, json
sys.path.insert(0, sys.argv[1])     # the modules as .mpy, as a board holds them
from fleetbox import devstate
gc.collect()
base = gc.mem_alloc()
mode, path, bound = sys.argv[2], sys.argv[3], int(sys.argv[4])
if mode == "base":
    print("BASE", base)
elif mode == "whole":               # the loader before: json.load, every entry a dict
    with open(path) as f:
        data = json.load(f)
    gc.collect()
    print("HELD", gc.mem_alloc() - base, len(data))
else:
    st = devstate.DeviceState(path, bound)
    gc.collect()
    held = gc.mem_alloc() - base
    print("HELD", held, len(st.devices), sum(len(k) for k in st.devices), sum(len(v) for v in st.devices.values()))
    for k, v in st.devices.items():
        print("SIZE", len(k), len(v))
"""


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("devmemheap")
    bytecode(str(tmp / "mpy"), None)
    script = tmp / "load.py"
    script.write_text(MP_LOAD)
    full = tmp / "devices.json"
    full.write_text(json.dumps(realistic(256)))      # one line, json.dump's blanks: as older firmware wrote it
    kit = {"tmp": tmp, "script": str(script), "mpy": str(tmp / "mpy"), "full": str(full)}
    kit["base"] = int(_run(kit, "4M", "base", str(full), 512)[0][1])
    return kit


def _run(kit, heap, mode, path, bound):
    r = subprocess.run([MP, "-X", "heapsize=%s" % heap, kit["script"], kit["mpy"], mode, path, str(bound)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode:
        return None, r.stdout + r.stderr
    return [line.split() for line in r.stdout.splitlines()][0], r.stdout


def test_a_full_device_memory_loads_where_parsing_it_whole_ran_out_of_memory(kit):
    assert os.path.getsize(kit["full"]) > 64 * 1024
    heap = kit["base"] + DATA_HEAP
    held, out = _run(kit, heap, "stream", kit["full"], 512)
    assert held is not None, out
    assert held[2] == "512"
    print("512 entries (%d B file): held %s B, %d B an entry, in %d B of heap (modules %d B)"
          % (os.path.getsize(kit["full"]), held[1], int(held[1]) // 512, heap, kit["base"]))
    whole, out = _run(kit, heap, "whole", kit["full"], 512)
    assert whole is None and "MemoryError" in out
    whole, out = _run(kit, "4M", "whole", kit["full"], 512)
    print("parsed whole: held %s B" % whole[1])
    assert int(whole[1]) > 2 * int(held[1])


def test_esp32_poe_bound_fits_its_budget_on_a_32_bit_board(kit):
    with open(os.path.join(ROOT, "board", "esp32-poe", "board.yaml")) as f:
        bound = yaml.safe_load(f)["hardware"]["device_memory"]
    path = str(kit["tmp"] / "esp32.json")
    with open(path, "w") as f:
        json.dump(realistic(bound // 2), f)
    held, out = _run(kit, "1M", "stream", path, bound)
    assert held is not None and held[2] == str(bound), out
    sizes = [(int(w[1]), int(w[2])) for w in (line.split() for line in out.splitlines()) if w[0] == "SIZE"]
    assert len(sizes) == bound
    # a 32-bit port: a str is a 16-byte object and its bytes (and NUL) in 16-byte blocks; 8 bytes a
    # table slot, the table sized once for the bound (at most twice its entries)
    estimate = sum(16 + -(-(k + 1) // 16) * 16 + 16 + -(-(v + 1) // 16) * 16 for k, v in sizes) + 8 * 2 * bound
    print("esp32-poe: %d entries, held %s B on this 64-bit port, about %d B on a 32-bit board (budget %d)"
          % (bound, held[1], estimate, ESP32_BUDGET))
    assert estimate <= ESP32_BUDGET
