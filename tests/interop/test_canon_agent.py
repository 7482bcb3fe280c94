"""Canon's extra SNMP agent on UDP 47545, whose replies come from a high port.

A simulated Canon (simulator/canon47545.py relays 47545 to the device's agent and answers
from an ephemeral port) is swept on CPython and, through `fbtool scan`, on MicroPython:
both ask it and fold its answer into the device's one record (the HP beside it has none); a strict
request (not marked any_port) to 47545 hears nothing.
"""
import asyncio
import os
import random
import sys
import time

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "host-tools"))

from simulator.site import DEFAULT_SITE_YAML, Site, SiteError  # noqa: E402
from fleetbox import assemble, devstate, profiles, snmp  # noqa: E402
from fleetbox.oids import SYS_NAME  # noqa: E402
from fleetbox.sweep import SweepOptions, sweep  # noqa: E402
from fbtool import scan  # noqa: E402

NET = "127.47.54."
CANON = NET + "11"
HP = NET + "10"


@pytest.fixture(scope="module")
def site():
    spec = yaml.safe_load(DEFAULT_SITE_YAML.read_text())
    devs = {d["name"]: d for d in spec["devices"]}
    canon, hp = dict(devs["canon-c3525"]), dict(devs["hp-m404dn"])
    assert canon["extra_agent_port"] == 47545
    canon["address"], hp["address"] = CANON, HP
    last = None
    for _ in range(8):
        s = Site.from_dict({"devices": [canon, hp]}, port_override=random.randrange(20000, 60000))
        try:
            s.start()
        except SiteError as e:
            last = e
            continue
        if not s._relays:
            # the agent's fixed port is taken: another checkout's run of this test; it ends soon
            s.stop()
            last = AssertionError("UDP %s:47545 stayed taken (another run of this test?)" % CANON)
            time.sleep(2)
            continue
        yield s
        s.stop()
        return
    raise last


def test_relay_answers_from_a_high_port_only(site):
    async def go():
        c = snmp.Client(timeout_ms=300, retries=0)
        try:
            strict = None
            try:
                await c.get(CANON, [SYS_NAME], port=47545)
            except snmp.Timeout:
                strict = "timeout"
            loose = await c.get(CANON, [SYS_NAME], port=47545, any_port=True)
            return strict, loose, c.stats["dropped"]
        finally:
            c.close()
    strict, loose, dropped = asyncio.run(go())
    assert strict == "timeout" and dropped >= 1
    assert loose == [(SYS_NAME, b"iR-ADV-C3525-Sales")]


def test_sweep_merges_the_extra_agent_into_one_record_on_cpython(site, tmp_path):
    plist = profiles.load([scan.compiled_profiles()])
    state = devstate.DeviceState(str(tmp_path / "state.json"))
    got, stats = [], {}

    async def go():
        c = snmp.Client(timeout_ms=500, retries=1)
        try:
            addrs = [(CANON, site.devices[0].port), (HP, site.devices[1].port)]
            await sweep(c, iter(addrs), got.append, SweepOptions(profiles=plist, state=state, stats=stats))
        finally:
            c.close()
    asyncio.run(go())
    # The Canon is one device: one record, at its usual port, its second agent asked and merged.
    by = sorted((r["ip"], r["port"], r["serial"]) for r in got)
    assert by == sorted([(HP, site.devices[1].port, "PHBQB07213"), (CANON, site.devices[0].port, "2RF05821")])
    assert stats["extra_agents"] == 1
    canon = [r for r in got if r["ip"] == CANON][0]
    assert canon["manufacturer"] == "Canon" and canon["counters"]["total"] > 0


def test_merge_extra_fills_only_what_the_main_agent_lacked():
    main = {"ip": CANON, "port": 161, "serial": "S", "model": None, "counters": {"total": 10},
            "sources": {"counters.total": "prtMarkerLifeCount"}}
    extra = {"ip": CANON, "port": 47545, "serial": "X", "model": "iR-ADV C3525",
             "counters": {"total": 99, "copy": 4, "vendor": {"101": 10}},
             "sources": {"model": "profile canon", "counters.copy": "1.3.6.1.4.1.1602.1.11.1.3.1.4.301"}}
    rec = assemble.merge_extra(main, extra, 47545)
    assert rec["port"] == 161 and rec["serial"] == "S" and rec["counters"]["total"] == 10
    assert rec["model"] == "iR-ADV C3525" and rec["sources"]["model"] == "udp:47545 profile canon"
    assert rec["counters"]["copy"] == 4 and rec["counters"]["vendor"] == {"101": 10}
    assert rec["sources"]["counters.copy"].startswith("udp:47545 1.3.6.1.4.1.1602")
    assert rec["sources"]["counters.total"] == "prtMarkerLifeCount"


def test_fbtool_scan_on_micropython_reads_47545(site, capfd):
    # host names too: resolved on the box; one that does not resolve is logged and skipped
    records, probed = scan.run([CANON, HP, "no-such-printer.invalid", "localhost"],
                               port=site.devices[0].port, timeout_ms=500, verbose=1)
    assert probed == 3
    assert "W targets: cannot resolve host name 'no-such-printer.invalid'" in capfd.readouterr().err
    assert sorted((r["ip"], r["port"]) for r in records) == sorted(
        [(CANON, site.devices[0].port), (HP, site.devices[1].port)])
