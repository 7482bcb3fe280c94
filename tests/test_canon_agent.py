"""Canon's extra SNMP agent on UDP 47545, whose replies come from a high port.

A simulated Canon (simulator/canon47545.py relays 47545 to the device's agent and answers
from an ephemeral port) is swept on CPython and, through `fbtool scan`, on MicroPython:
both give the device's record twice, from its usual port and from 47545 (the HP beside it: once); a strict
request (not marked any_port) to 47545 hears nothing.
"""
import asyncio
import os
import random
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "host-tools"))

from simulator.site import DEFAULT_SITE_YAML, Site, SiteError  # noqa: E402
from fleetbox import collector, devstate, profiles, snmp  # noqa: E402
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
    for _ in range(4):
        s = Site.from_dict({"devices": [canon, hp]}, port_override=random.randrange(20000, 60000))
        try:
            s.start()
        except SiteError as e:
            last = e
            continue
        if not s._relays:
            s.stop()
            pytest.skip("UDP %s:47545 is taken (another run of this test?)" % CANON)
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
                await c.get(CANON, [collector.SYS_NAME], port=47545)
            except snmp.Timeout:
                strict = "timeout"
            loose = await c.get(CANON, [collector.SYS_NAME], port=47545, any_port=True)
            return strict, loose, c.stats["dropped"]
        finally:
            c.close()
    strict, loose, dropped = asyncio.run(go())
    assert strict == "timeout" and dropped >= 1
    assert loose == [(collector.SYS_NAME, b"iR-ADV-C3525-Sales")]


def test_sweep_collects_the_extra_agent_on_cpython(site, tmp_path):
    plist = profiles.load([scan.compiled_profiles()])
    state = devstate.DeviceState(str(tmp_path / "state.json"))
    got = []

    async def go():
        c = snmp.Client(timeout_ms=500, retries=1)
        try:
            addrs = [(CANON, site.devices[0].port), (HP, site.devices[1].port)]
            await collector.sweep(c, iter(addrs), got.append, profile_list=plist, state=state)
        finally:
            c.close()
    asyncio.run(go())
    by = sorted((r["ip"], r["port"], r["serial"]) for r in got)
    assert by == sorted([(HP, site.devices[1].port, "PHBQB07213"),
                         (CANON, site.devices[0].port, "2RF05821"), (CANON, 47545, "2RF05821")])
    extra = [r for r in got if r["port"] == 47545][0]
    assert extra["manufacturer"] == "Canon" and extra["counters"]["total"] > 0


def test_fbtool_scan_on_micropython_reads_47545(site, capfd):
    # host names too: resolved on the box; one that does not resolve is logged and skipped
    records, probed = scan.run([CANON, HP, "no-such-printer.invalid", "localhost"],
                               port=site.devices[0].port, timeout_ms=500)
    assert probed == 3
    assert "cannot resolve host name 'no-such-printer.invalid'" in capfd.readouterr().err
    assert sorted((r["ip"], r["port"]) for r in records) == sorted(
        [(CANON, site.devices[0].port), (CANON, 47545), (HP, site.devices[1].port)])
