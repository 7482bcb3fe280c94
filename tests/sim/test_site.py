"""The simulated customer site (simulator/site/, simulator/site.yaml).

Starts the default site on a random high UDP port and checks it with net-snmp's tools
(an independent SNMP peer) and with the site's own truth().
"""
import ipaddress
import os
import random
import shutil
import socket
import subprocess
import sys
import time

import pytest
from pysnmp.proto import rfc1905

from simulator.site import (OID_LIFE_COUNT, OID_SERIAL, OID_SYS_DESCR, Site, SiteError,
                            parse_snmprec, readdress_snmprec, snmp_get, walks_dir)
from simulator.site.livemib import AlertTable
from simulator.site.physics import Supply

pytestmark = [
    pytest.mark.skipif(shutil.which("snmpget") is None, reason="net-snmp tools not installed"),
    pytest.mark.skipif(not (walks_dir() / "recordings").is_dir(),
                       reason="printer recordings not available (FLEETBOX_WALKS)"),
]

HR_DEVICE_TYPE = "1.3.6.1.2.1.25.3.2.1.2"
HR_DEVICE_PRINTER = "1.3.6.1.2.1.25.3.1.5"
PRINTER_MIB = "1.3.6.1.2.1.43"
SUPPLY_LEVEL = "1.3.6.1.2.1.43.11.1.1.9.1"
SUPPLY_MAX = "1.3.6.1.2.1.43.11.1.1.8.1"
TONER_TYPES = {3, 21, 5, 6}
NO_SUCH = (rfc1905.noSuchObject.tagSet, rfc1905.noSuchInstance.tagSet)


def _start(make, tries=4):
    """Start a site on a random high port (retrying if another run holds that port)."""
    last = None
    for _ in range(tries):
        port = random.randrange(20000, 60000)
        site = make(port)
        try:
            site.start()
            return site
        except SiteError as exc:
            last = exc
            if "cannot bind" not in str(exc):
                raise
    raise last


@pytest.fixture(scope="module")
def site():
    s = _start(lambda port: Site.from_yaml(port_override=port))
    yield s
    s.stop()


def net_snmp(tool, dev, *oids, version="2c", timeout=2):
    """Run a net-snmp tool against a device; returns [(numeric oid, value text)]."""
    cmd = [tool, f"-v{version}", "-c", dev.community, "-On", "-Oq", "-t", "1", "-r", "1",
           f"{dev.address}:{dev.port}", *oids]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout * 10)
    assert res.returncode == 0, f"{' '.join(cmd)}: {res.stderr}"
    out = []
    for line in res.stdout.splitlines():
        if not line.startswith("."):
            continue
        oid, _, value = line.partition(" ")
        if value.startswith(("No more variables", "No Such")):
            continue
        out.append((oid.lstrip("."), value.strip()))
    return out


def walk_ints(dev, root):
    return {int(oid.rsplit(".", 1)[1]): int(v) for oid, v in net_snmp("snmpbulkwalk", dev, root)
            if v.lstrip("-").isdigit()}


def get_value(dev, oid):
    (_, v), = snmp_get(dev.address, dev.port, dev.community, [oid])
    return v


# ------------------------------------------------------------------------ description

def test_default_site_description():
    s = Site.from_yaml()                       # not started: only the description
    assert all(d.port == 161 for d in s.devices)
    printers = [d for d in s.devices if d.is_printer]
    others = [d for d in s.devices if not d.is_printer]
    assert len(printers) >= 8
    assert len({d.manufacturer for d in printers}) >= 4
    assert len(others) >= 2
    assert {d.kind for d in printers} == {"dynamic", "recording"}
    addresses = [ipaddress.IPv4Address(d.address) for d in s.devices]
    assert len(set(addresses)) == len(addresses)
    net = ipaddress.IPv4Network(f"{addresses[0]}/24", strict=False)
    assert all(a in net for a in addresses) and net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8"))
    dynamic = [d for d in printers if d.kind == "dynamic"]
    colours = {len(d.live.colorants) > 1 for d in dynamic}
    assert colours == {True, False}, "dynamic printers should include mono and colour devices"


def test_bad_descriptions_are_rejected():
    base = {"kind": "dynamic", "sys_descr": "x"}
    with pytest.raises(SiteError, match="loopback"):
        Site.from_dict({"devices": [dict(base, name="a", address="10.0.0.1")]})
    with pytest.raises(SiteError, match="two devices"):
        Site.from_dict({"devices": [dict(base, name="a", address="127.31.9.1"),
                                    dict(base, name="b", address="127.31.9.1")]})
    with pytest.raises(SiteError, match="outside"):
        Site.from_dict({"network": "127.31.0.0/24",
                        "devices": [dict(base, name="a", address="127.32.0.1")]})
    with pytest.raises(SiteError, match="not found"):
        Site.from_dict({"devices": [{"name": "r", "address": "127.31.9.2", "kind": "recording",
                                     "printer": True, "recording": "recordings/nope.snmprec"}]})


# ------------------------------------------------------------------------ running site

def test_every_device_answers(site):
    for dev in site.devices:
        ((oid, descr),) = net_snmp("snmpget", dev, OID_SYS_DESCR)
        assert oid == OID_SYS_DESCR and descr, dev.name
        # and SNMPv1 too
        assert net_snmp("snmpget", dev, OID_SYS_DESCR, version="1"), dev.name


def test_wrong_community_gets_no_answer(site):
    for name in ("hp-m404dn", "brother-mfc-l2710dw"):
        dev = site.device(name)
        with pytest.raises(TimeoutError):
            snmp_get(dev.address, dev.port, "not-" + dev.community, timeout=0.5, retries=0)


def test_truth_matches_snmp(site):
    truth = site.truth()
    assert len(truth) == len(site.printers)
    for t in truth:
        dev = next(d for d in site.devices if (d.address, d.port) == (t["ip"], t["port"]))
        assert t["manufacturer"] and t["model"], dev.name
        serial = get_value(dev, OID_SERIAL)
        if t["serial_source"] == "prtGeneralSerialNumber":
            assert bytes(serial).decode().strip() == t["serial"], dev.name
        else:
            assert serial.tagSet in NO_SUCH, dev.name
        total = get_value(dev, OID_LIFE_COUNT)
        levels = walk_ints(dev, SUPPLY_LEVEL)
        maxes = walk_ints(dev, SUPPLY_MAX)
        after = dev.truth()
        if t["total_source"] == "prtMarkerLifeCount":
            assert t["total"] <= int(total) <= after["total"], dev.name
        else:
            assert total.tagSet in NO_SUCH, dev.name
        assert [s["index"] for s in t["supplies"]] == sorted(levels), dev.name
        for s, s_after in zip(t["supplies"], after["supplies"]):
            assert maxes[s["index"]] == s["max"], (dev.name, s)
            lo, hi = sorted((s["level"], s_after["level"]))
            if dev.kind == "recording" or s["type_code"] in TONER_TYPES:
                assert lo <= levels[s["index"]] <= hi, (dev.name, s)


def test_recording_truth_values(site):
    by_name = {t["name"]: t for t in site.truth()}
    ricoh = by_name["ricoh-mpc3002"]
    assert (ricoh["serial"], ricoh["total"]) == ("W492KB03439", 271871)
    brother = by_name["brother-mfc-l2710dw"]
    assert brother["total"] is None
    assert brother["serial_source"] != "prtGeneralSerialNumber"
    assert [s["level"] for s in brother["supplies"]][:1] == [-3]
    hp = by_name["hp-m452nw"]
    assert hp["serial"] is None and len(hp["supplies"]) == 4


def test_dynamic_printer_counts_pages_and_uses_toner(site):
    canon = site.device("canon-c3525")          # 2 pages/s
    kyocera = site.device("kyocera-m2540dn")    # 1 page/s, toner counted in impressions
    c0 = int(get_value(canon, OID_LIFE_COUNT))
    k0 = walk_ints(kyocera, SUPPLY_LEVEL)[1]
    canon_toner0 = walk_ints(canon, SUPPLY_LEVEL)
    time.sleep(2.2)
    c1 = int(get_value(canon, OID_LIFE_COUNT))
    k1 = walk_ints(kyocera, SUPPLY_LEVEL)[1]
    canon_toner1 = walk_ints(canon, SUPPLY_LEVEL)
    assert c1 >= c0 + 3
    assert k1 <= k0 - 1
    assert all(canon_toner1[i] <= canon_toner0[i] for i in canon_toner0)
    # a burst of printing moves toner visibly, in proportion
    site.print_pages("kyocera-m2540dn", 100)
    k2 = walk_ints(kyocera, SUPPLY_LEVEL)[1]
    assert k1 - 110 <= k2 <= k1 - 100


def test_getbulk_and_getnext_agree_and_end_cleanly(site):
    dev = site.device("lexmark-cx725")
    bulk = [o for o, _ in net_snmp("snmpbulkwalk", dev, "1.3.6")]
    nxt = [o for o, _ in net_snmp("snmpwalk", dev, "1.3.6", version="1")]
    assert bulk == nxt and len(bulk) > 100
    assert bulk == sorted(bulk, key=lambda o: tuple(map(int, o.split("."))))
    # past the end: endOfMibView (v2c), noSuchName (v1)
    res = subprocess.run(["snmpgetnext", "-v2c", "-c", dev.community, "-On",
                          f"{dev.address}:{dev.port}", bulk[-1]], capture_output=True, text=True)
    assert "No more variables" in res.stdout
    res = subprocess.run(["snmpgetnext", "-v1", "-c", dev.community, "-On",
                          f"{dev.address}:{dev.port}", bulk[-1]], capture_output=True, text=True)
    assert "noSuchName" in res.stdout + res.stderr
    # a colour printer with a low toner reports it
    assert "lowToner" in dev.truth()["errors"]


def test_non_printers_have_no_printer_mib(site):
    others = [d for d in site.devices if not d.is_printer]
    assert len(others) >= 2
    for dev in others:
        prt = net_snmp("snmpbulkwalk", dev, PRINTER_MIB)
        assert not [o for o, _ in prt if o.startswith(PRINTER_MIB + ".")], dev.name
        types = [v for _, v in net_snmp("snmpbulkwalk", dev, HR_DEVICE_TYPE)]
        if dev.name == "win-printsrv01":
            # the print-server trap: queues listed as hrDevicePrinter, still not a printer
            assert "." + HR_DEVICE_PRINTER in types
        else:
            assert "." + HR_DEVICE_PRINTER not in types, dev.name


def test_faults_down_up_slow(site):
    dev = site.device("hp-m404dn")
    before = int(get_value(dev, OID_LIFE_COUNT))
    site.set_fault(dev.name, "down")
    try:
        with pytest.raises(TimeoutError):
            snmp_get(dev.address, dev.port, dev.community, timeout=0.5, retries=0)
        frozen = dev.truth()["total"]
        time.sleep(1.2)
        assert dev.truth()["total"] == frozen          # powered off: not printing
    finally:
        site.set_fault(dev.name, "up")
    assert int(get_value(dev, OID_LIFE_COUNT)) >= before
    site.set_fault(dev.name, "slow", delay=1.0)
    try:
        with pytest.raises(TimeoutError):
            snmp_get(dev.address, dev.port, dev.community, timeout=0.4, retries=0)
        t0 = time.monotonic()
        snmp_get(dev.address, dev.port, dev.community, timeout=3, retries=0)
        assert time.monotonic() - t0 >= 0.9
    finally:
        site.set_fault(dev.name, "up")
    site.set_fault(dev.name, "jammed")
    try:
        assert "jammed" in dev.truth()["errors"]
        alerts = net_snmp("snmpbulkwalk", dev, "1.3.6.1.2.1.43.18.1.1.7")
        assert any(v == "8" for _, v in alerts)                 # prtAlertCode jam
    finally:
        site.set_fault(dev.name, "clear")
    with pytest.raises(SiteError):
        site.set_fault("brother-mfc-l2710dw", "down")          # recordings: not supported


# ------------------------------------------------------------------------ lifecycle

def _processes_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if text.encode() in fh.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_stop_leaves_nothing_behind():
    small = {"devices": [
        {"name": "rec", "address": "127.31.7.20", "kind": "recording", "printer": True,
         "recording": "recordings/xerox.snmprec", "manufacturer": "Xerox", "model": "AltaLink C8045"},
        {"name": "dyn", "address": "127.31.7.10", "kind": "dynamic", "manufacturer": "Brother",
         "model": "HL-L5100DN", "serial": "E7x", "sys_descr": "Brother NC-8800w",
         "printer": {"supplies": [{"description": "Toner", "colorant": "black", "yield": 100}]}},
    ]}
    s = _start(lambda port: Site.from_dict(small, port_override=port))
    with s:
        pid = s.snmpsim_pid
        tmp = str(s._snmpsim.tmp)
        assert _processes_mentioning(tmp)
        assert {t["name"] for t in s.truth()} == {"rec", "dyn"}
    assert not _processes_mentioning(tmp)
    assert not os.path.exists(tmp)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    s.stop()                                           # idempotent
    for dev in s.devices:                              # every port is free again
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((dev.address, dev.port))


def test_port_in_use_names_the_device():
    small = {"devices": [{"name": "lonely", "address": "127.31.7.30", "kind": "dynamic",
                          "sys_descr": "x"}]}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.31.7.30", 0))
        port = sock.getsockname()[1]
        with pytest.raises(SiteError, match="lonely"):
            Site.from_dict(small, port_override=port).start()


def test_recordings_are_served_at_the_device_address(tmp_path):
    """A recording answers as its device would at the simulated address: ipAddrTable's
    own (non-loopback) entry moves there, lines stay in OID order; damaged lines are
    skipped by the parser instead of stopping the site."""
    text = ("1.3.6.1.2.1.2.2.1.17.1|65|6git3159\n"
            "1.3.6.1.2.1.4.20.1.1.10.0.0.36|64|10.0.0.36\n"
            "1.3.6.1.2.1.4.20.1.1.127.0.0.1|64|127.0.0.1\n"
            "1.3.6.1.2.1.4.20.1.2.0.0.0.0|2|3\n"
            "1.3.6.1.2.1.4.20.1.2.10.0.0.36|2|1\n"
            "1.3.6.1.2.1.4.20.1.2.127.0.0.1|2|2\n")
    served = readdress_snmprec(text, "127.31.0.99")
    lines = served.splitlines()
    assert "1.3.6.1.2.1.4.20.1.2.127.31.0.99|2|1" in lines
    assert "1.3.6.1.2.1.4.20.1.1.127.31.0.99|64|127.31.0.99" in lines
    assert "1.3.6.1.2.1.4.20.1.2.127.0.0.1|2|2" in lines and "10.0.0.36" not in served
    oids = [tuple(int(x) for x in line.split("|")[0].split(".")) for line in lines]
    assert oids == sorted(oids)
    path = tmp_path / "r.snmprec"
    path.write_text(served)
    recs = parse_snmprec(path)
    assert (1, 3, 6, 1, 2, 1, 2, 2, 1, 17, 1) not in recs     # the damaged Counter32
    assert recs[(1, 3, 6, 1, 2, 1, 4, 20, 1, 2, 127, 31, 0, 99)] == ("2", 1)
    assert readdress_snmprec("1.3.6.1.2.1.1.5.0|4|x\n", "127.31.0.99") == "1.3.6.1.2.1.1.5.0|4|x\n"


# ------------------------------------------------------------------------ physics, CLI

def test_supplies_drain_fill_and_get_replaced():
    toner = Supply(1, {"description": "Black", "colorant": "black", "max": 100, "yield": 1000}, 1, "black")
    assert [toner.level(p, 0) for p in (0, 1, 10, 990, 999, 1000, 1001, 1500)] == \
        [100, 100, 99, 1, 1, 100, 100, 50]                       # replaced when it runs out
    kept = Supply(1, {"max": 100, "yield": 1000, "replace": False}, 0, None)
    assert kept.level(5000, 0) == 0
    cyan = Supply(2, {"colorant": "cyan", "max": 100, "yield": 100}, 2, "cyan")
    assert cyan.uses == "color" and cyan.level(1000, 10) == 90    # only colour pages count
    waste = Supply(3, {"type": "wasteToner", "max": 100, "level": 0, "yield": 100}, 0, None)
    assert waste.class_code == 4 and waste.level(50, 0) == 50 and waste.level(150, 0) == 50
    fixed = Supply(4, {"max": 100, "level": 40}, 0, None)        # no yield: never moves
    assert not fixed.dynamic and fixed.level(10**6, 10**6) == 40
    with pytest.raises(SiteError, match="uses"):
        Supply(5, {"uses": "mono"}, 0, None)


def test_alert_rows_keep_their_index_while_the_condition_lasts():
    alerts = AlertTable()
    low = (4, 11, 1, 1104, "Black low")
    jam = (3, 13, 1, 8, "Paper jam")
    rows = alerts.update({("supply", 1): low}, up=100)
    assert rows == {("supply", 1): (1, 100, 1104)}
    rows = alerts.update({("supply", 1): low, ("error", "jammed"): jam}, up=200)
    assert rows == {("supply", 1): (1, 100, 1104), ("error", "jammed"): (2, 200, 8)}
    empty = (3, 11, 1, 1101, "Black empty")                       # same supply, new code
    rows = alerts.update({("supply", 1): empty}, up=300)
    assert rows == {("supply", 1): (3, 300, 1101)}
    assert alerts.update({}, up=400) == {}


def test_cli_starts_the_site_prints_it_and_stops(tmp_path):
    """``python -m simulator.site --once`` (the package's __main__) on a one-printer site."""
    small = ("devices:\n"
             "  - {name: cli-printer, address: 127.31.7.40, kind: dynamic, manufacturer: HP,\n"
             "     model: M404dn, serial: CLI123, printer: {life_count: 4242, pages_per_second: 0}}\n")
    config = tmp_path / "site.yaml"
    config.write_text(small)
    env = dict(os.environ, COLUMNS="200")
    for _ in range(4):
        port = random.randrange(20000, 60000)
        res = subprocess.run([sys.executable, "-m", "simulator.site", "--once", "--config", str(config),
                              "--port", str(port)], capture_output=True, text=True, timeout=120, env=env)
        if "cannot bind" not in res.stdout:
            break
    assert res.returncode == 0, res.stdout + res.stderr
    assert "site up in" in res.stdout
    assert "cli-printer" in res.stdout and f"127.31.7.40:{port}" in res.stdout
    assert "CLI123" in res.stdout and "4242" in res.stdout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:   # stopped: port free again
        sock.bind(("127.31.7.40", port))
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices:\n  - {name: x, address: 10.1.2.3, kind: dynamic}\n")
    res = subprocess.run([sys.executable, "-m", "simulator.site", "--once", "--config", str(bad)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 1 and "not a loopback address" in res.stdout
