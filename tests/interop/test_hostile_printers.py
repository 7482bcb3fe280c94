"""The collector on MicroPython (the box's heap) against the hostile-printer kit
(tests/hostile_printer.py): it logs, survives, bounds its work, and the well-behaved
printers' records still arrive, complete."""
import json
import os
import subprocess
import sys

import pytest

from tests.hostile_printer import HostilePrinters, serial_of

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "host-tools"))
from fbtool import paths  # noqa: E402
from fbtool import profiles as compiler  # noqa: E402

NET = "127.66.14."
SNMP_PORT = 16114
WEB_PORT = 18014
NORMAL, NORMAL_WEB = NET + "10", NET + "11"
SNMP_HOSTILE = {NET + "20": "escapes", NET + "21": "wrong-types", NET + "22": "absurd", NET + "23": "huge",
                NET + "24": "looping", NET + "25": "flood", NET + "26": "long-rows"}
WEB_HOSTILE = {NET + "30": "huge", NET + "31": "escapes", NET + "32": "absurd", NET + "33": "drip",
               NET + "34": "long-header", NET + "35": "bad-chunk"}
PRINTMASTER_SERIAL = "U64641E7J134163"
HEAP = "1M"                      # the box's heap (simulator/runner.py)


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    printers = {NORMAL: ("normal", None), NORMAL_WEB: ("normal", "normal")}
    printers.update({a: (b, None) for a, b in SNMP_HOSTILE.items()})
    printers.update({a: ("normal", b) for a, b in WEB_HOSTILE.items()})
    profiles = str(tmp_path_factory.mktemp("profiles") / "profiles.json")
    compiler.compile_to(profiles)
    site = HostilePrinters(printers, SNMP_PORT, WEB_PORT)
    try:
        opts = {"targets": ["%s:%d" % (a, SNMP_PORT) for a in sorted(printers)], "exclude": [],
                "community": "public", "version": "2c", "v3": None, "port": SNMP_PORT, "timeout_ms": 1000,
                "retries": 1, "workers": 8, "kind": "full", "profiles": profiles, "web_ports": {"80": WEB_PORT},
                "log_level": "info"}
        r = subprocess.run([paths.micropython(), "-X", "heapsize=" + HEAP,
                            os.path.join(ROOT, "host-tools", "fbtool", "mp_scan.py"), paths.FIRMWARE],
                           input=json.dumps(opts) + "\n", capture_output=True, text=True, timeout=600)
        work = {a: ag.requests for a, ag in site.agents.items()}
        web = {a: w.requests for a, w in site.webs.items()}
    finally:
        site.stop()
    records = {}
    for line in r.stdout.splitlines():
        if line.startswith("REC "):
            rec = json.loads(line[4:])
            records[rec["ip"]] = rec
    log = [line for line in r.stdout.splitlines() if not line.startswith(("REC ", "DONE "))]
    return r, records, log, work, web


def _lines(log, address):
    return [line for line in log if (" %s " % address) in line]


def test_the_collector_survives_within_the_box_heap_and_bounds_its_work(scan):
    r, records, log, work, web = scan
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "DONE 15 15" in r.stdout.splitlines(), r.stdout[-2000:]
    assert max(work.values()) <= 120, work              # a 20000-row table costs what a normal one does, nearly
    assert work[NET + "24"] <= 2 * work[NORMAL], work     # looping OIDs end the walk
    assert all(n == 1 for n in web.values()), web          # one fetch per page, however it ended


def test_the_well_behaved_printers_arrive_complete(scan):
    _, records, _, _, _ = scan
    assert records[NORMAL]["serial"] == serial_of(NORMAL) and records[NORMAL]["counters"]["total"] == 42976
    assert len(records[NORMAL]["supplies"]) == 7
    assert records[NORMAL_WEB]["counters"]["total"] == 4321
    assert records[NORMAL_WEB]["sources"]["counters.total"].startswith("web:http:")
    for address in list(SNMP_HOSTILE) + list(WEB_HOSTILE):
        assert address in records, address


def test_every_record_keeps_its_types_and_bounds(scan):
    _, records, _, _, _ = scan
    for address, rec in records.items():
        assert all(isinstance(v, int) and v >= 0 for v in rec["counters"].values()), (address, rec["counters"])
        assert len(rec["supplies"]) <= 64 and len(rec["status"]["alerts"]) <= 64, address
        for s in rec["supplies"]:
            assert s["percent"] is None or 0 <= s["percent"] <= 100, (address, s)
        for field in ("serial", "model", "manufacturer", "sys_descr", "hostname", "location"):
            assert rec.get(field) is None or isinstance(rec[field], str), (address, field)


def test_escapes_are_kept_as_data_and_shown_escaped(scan):
    _, records, _, _, _ = scan
    from fbtool.scan import printable
    serial = records[NET + "20"]["serial"]
    assert serial.startswith("\x1b]0;owned\x07\x1b[2J") and serial_of(NET + "20") in serial
    assert "\x1b" not in printable(serial) and "\\x1b]0;owned" in printable(serial)
    assert records[NET + "31"]["serial"] == serial_of(NET + "31")   # the page's escaped serial was not taken


def test_huge_and_looping_tables_are_cut(scan):
    _, records, _, work, _ = scan
    huge = records[NET + "23"]
    assert len(huge["supplies"]) == 64 and len(huge["status"]["alerts"]) == 64
    assert len(records[NET + "24"]["supplies"]) <= 7


def test_hostile_pages_are_refused_with_a_reason_and_snmp_data_kept(scan):
    _, records, log, _, _ = scan
    reasons = {"30": "page larger than 262144 bytes", "33": "too slow", "34": "longer than 1024 bytes",
               "35": "bad chunk size"}
    for last, reason in reasons.items():
        address = NET + last
        assert any(reason in line for line in _lines(log, address)), (address, _lines(log, address))
        assert records[address]["serial"] == serial_of(address) and "total" not in records[address]["counters"]
    assert "total" not in records[NET + "32"]["counters"]        # a 40-digit counter is no counter


def test_a_flooding_printer_is_read_with_getnext(scan):
    # GETBULK answers of ~60 KB whatever was asked exceed the box's 8 KB datagram buffer: each is
    # logged and asked again with fewer rows, down to one, then the agent is read with GETNEXT.
    _, records, log, work, _ = scan
    flood = NET + "25"
    assert any("over 8192 bytes: asking for less" in line for line in _lines(log, flood)), _lines(log, flood)
    assert records[flood]["counters"]["total"] == 42976 and len(records[flood]["supplies"]) == 7
    assert work[flood] <= 120, work


def test_a_printer_with_long_rows_is_walked_in_smaller_pages(scan):
    # 24 supplies of ~1 KB each: a GETBULK of many rows outgrows the receive buffer, smaller ones fit
    _, records, log, work, _ = scan
    long_rows = NET + "26"
    warned = [line for line in _lines(log, long_rows) if "over 8192 bytes: asking for less" in line]
    supplies = records[long_rows]["supplies"]
    assert [s["description"][:15] for s in supplies] == ["Long supply %02d " % i for i in range(1, 25)]
    assert all(len(s["description"]) == 1000 and s["percent"] == s["index"] for s in supplies), supplies[0]
    # the agent's smaller page size is remembered: a few warnings, not one per walk
    assert 1 <= len(warned) <= 8 and work[long_rows] <= 3 * work[NORMAL] + 20, (warned, work)


def test_what_the_hostile_printers_gave_travels_to_the_cloud_unchanged(scan, tmp_path):
    import asyncio
    from tests.interop.test_uplink import box
    from tests.uplink_kit import Kit
    _, records, _, _, _ = scan
    d = tmp_path / "cloud"
    d.mkdir()
    kit = Kit(str(d), (NET + "240", 0), (NET + "241", 0)).start()
    try:
        spool, up = box(kit, tmp_path)
        spool.put(json.dumps({"scan": "full", "cycle": 1, "records": list(records.values())}))
        assert asyncio.run(up.drain(spool)) == 1
        stored = {r["ip"]: r for r in kit.store.devices(kit.serial)}
    finally:
        kit.stop()
    assert stored.keys() == records.keys()
    for address, rec in records.items():
        assert stored[address]["serial"] == rec["serial"] and stored[address]["counters"] == rec["counters"], address
