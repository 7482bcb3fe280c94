"""The box's memory bar, on the real MicroPython against real SNMP peers: a sweep of a /24
(the 19 recordings replayed by snmpsim, a live pysnmp printer, 30 other devices) with full
collection of its 20 printers and their records spooled as the box does (staged on flash,
batches of 8), runs in the heap its modules hold once imported (a board keeps them frozen
in flash) plus 64 KB of data heap. The same sweep in much less fails,
so the bar is real. bench/collect/collect.py --part c prints the figures."""
import glob
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "host-tools"), os.path.join(ROOT, "bench", "collect")]
import collect  # noqa: E402  (bench/collect/collect.py: the same site and the same MicroPython script)
from fbtool import profiles as compiler  # noqa: E402
from fleetbox.spool import read_batch  # noqa: E402
from simulator.site import Site  # noqa: E402
from tests.update_kit import bytecode  # noqa: E402

NET = "127.46.0."
PORT = 17582
DATA_HEAP = 64 * 1024
WORKERS = 0             # the box's default: as many collectors as the free heap holds (1 here; 2 need
                        # about 65 KB: bench/collect/collect.py --part c, fleetbox.sweep.collectors_for_heap)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweepheap")
    mpy = bytecode(str(tmp / "mpy"), None)
    prof = str(tmp / "profiles.json")
    compiler.compile_to(prof)
    desc = collect.site_description(NET)
    site = Site.from_dict(desc, port_override=PORT)
    site.start()
    try:
        yield {"tmp": tmp, "mpy": mpy, "profiles": prof, "code": collect.code_heap(mpy),
               "printers": sorted(d["address"] for d in desc["devices"] if d.get("printer"))}
    finally:
        site.stop()


def _sweep(kit, heap, name):
    spool = str(kit["tmp"] / ("spool-" + name))
    res, _, err = collect.mp_sweep(kit["mpy"], kit["profiles"], [NET + "0/24"], "full", heap=heap,
                                   workers=WORKERS, sample_ms=20, statics=str(kit["tmp"] / ("statics-" + name)),
                                   spool=spool, port=PORT)
    return res, err, spool


def test_a_24_with_20_printers_collects_in_64k_of_data_heap(kit):
    assert len(kit["printers"]) == 20
    res, err, spool = _sweep(kit, kit["code"] + DATA_HEAP, "bar")
    assert res is not None, err
    assert res["code"] <= kit["code"] + 1024            # the same modules held the same heap
    run = res["runs"][0]
    assert run["probed"] == 254 and run["found"] == 20
    assert res["peak"] - res["code"] <= DATA_HEAP
    print("code heap %d B, data heap peak %d B of %d" % (res["code"], res["peak"] - res["code"], DATA_HEAP))
    # every record reached the spool, once, whole: batches of 8
    batches = []
    for path in sorted(glob.glob(os.path.join(spool, "*.b"))):
        with open(path) as f:
            batches.append(read_batch(f))
    assert [len(b["records"]) for b in batches] == [8, 8, 4]
    recs = [r for b in batches for r in b["records"]]
    assert sorted(r["ip"] for r in recs) == kit["printers"]
    assert all(b["scan"] == "full" for b in batches)
    for r in recs:
        # the system group too where the collector asked it again (answers the sweep did not keep)
        assert r["scan"] == "full" and r["sys_object_id"] and r["sys_descr"], r
        assert r["manufacturer"] and isinstance(r["supplies"], list) and "status" in r, r["ip"]
    assert not glob.glob(os.path.join(spool, "*.tmp"))


def test_much_less_data_heap_fails_so_the_bar_is_real(kit):
    res, err, _ = _sweep(kit, kit["code"] + 16 * 1024, "short")
    # out of memory: the run dies, or (a collection's MemoryError is logged and the sweep goes
    # on) it misses printers
    assert res is None or res["runs"][0]["found"] < len(kit["printers"]), res
