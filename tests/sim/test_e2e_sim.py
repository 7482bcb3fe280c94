"""End to end: the box booted from its flash image on MicroPython, a simulated site, the cloud.

Checks what the cloud stored against what the simulated printers hold, that the
box opens no listening socket, and that it fails over to rescue when liberty stops.
"""
import os
import socket
import subprocess

import pytest

from simulator.runner import Simulation

SNMP_PORT = 17161
CLOUD_PORT = 17443
WEB_PORTS = {80: 17080, 443: 17444}   # the web-only printers' pages (simulator/webpages.py)


def _socket_inodes(pid):
    out = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _proc_net(name):
    rows = []
    with open("/proc/net/" + name) as f:
        next(f)
        for line in f:
            p = line.split()
            local, remote, state, inode = p[1], p[2], p[3], p[9]
            rows.append((int(local.split(":")[1], 16), remote, state, inode))
    return rows


def listening_sockets(pid):
    """(protocol, port) of sockets of pid that wait for others to connect or send first."""
    inodes = _socket_inodes(pid)
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    found = []
    for proto in ("tcp", "tcp6"):
        for port, _, state, inode in _proc_net(proto):
            if inode in inodes and state == "0A":  # LISTEN
                found.append((proto, port))
    for proto in ("udp", "udp6"):
        for port, _, _, inode in _proc_net(proto):
            if inode in inodes and port < low:  # a fixed, well-known port: a server
                found.append((proto, port))
    return found


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = Simulation(str(tmp_path_factory.mktemp("sim")), snmp_port=SNMP_PORT, cloud_port=CLOUD_PORT, interval=8,
                   liberty="127.77.1.1", rescue="127.77.1.2", echo=lambda s: None, web_ports=WEB_PORTS)
    try:
        s.start()
        s.wait_cycles(2, 240)
        yield s
    finally:
        s.stop()


def _served_texts(address, port):
    """hrDeviceDescr values and sysDescr as the agent serves them (net-snmp as the independent reader)."""
    out = []
    for oid in ("1.3.6.1.2.1.25.3.2.1.3", "1.3.6.1.2.1.1.1"):
        r = subprocess.run(["snmpwalk", "-v2c", "-c", "public", "-On", "-Oqv", "-t", "2",
                            "%s:%d" % (address, port), oid],
                           capture_output=True, text=True, timeout=30)
        out += [line.strip().strip('"') for line in r.stdout.splitlines() if line.strip()]
    return out


def test_cloud_holds_every_printer_as_the_site_serves_it(sim):
    stored = {d["ip"]: d for d in sim.devices()}
    truth = sim.site.truth()
    assert len(truth) >= 8
    assert len({t["manufacturer"] for t in truth}) >= 4
    assert sum(t.get("serial_source") == "prtGeneralSerialNumber" for t in truth) >= 6
    assert sum(t.get("total_source") == "web" for t in truth) >= 4
    for t in truth:
        d = stored.get(t["ip"])
        assert d is not None, "printer %s (%s) never reached the cloud" % (t["ip"], t["model"])
        assert d["manufacturer"] == t["manufacturer"], t["ip"]
        # The model is the clean name (profiles drop the vendor name, firmware noise and
        # marketing suffixes); its last word is the device's own (net-snmp reads it independently).
        served = _served_texts(t["ip"], SNMP_PORT)
        assert d["model"] == t["model"], (t["ip"], d["model"], served)
        assert any(d["model"].split()[-1] in x for x in served), (t["ip"], d["model"], served)
        # Serials exactly: the Printer-MIB's, else the vendor OID the profile names; never a guess:
        # one the site does not list must be the device's own words (HP's sysDescr "SN:...").
        if t["serial"] is not None:
            assert d["serial"] == t["serial"], (t["ip"], d["serial"], t["serial"])
            if t["serial_source"] == "web":
                assert d["sources"]["serial"] == t["web_serial_source"], (t["ip"], d["sources"])
        else:
            assert d["serial"] is None or ("SN:%s," % d["serial"]) in " ".join(served), (t["ip"], d["serial"])
        got_total = d["counters"].get("total")
        if t["total"] is None:
            assert got_total is None
        else:
            # Dynamic printers keep printing: the stored reading is behind the live counter, never ahead.
            assert got_total is not None and 0 < got_total <= t["total"], (t["ip"], got_total, t["total"])
            if t["total_source"] == "web":
                # only the printer's web page shows it: exactly a value that page served, from there
                assert d["sources"]["counters.total"] == t["web_source"], (t["ip"], d["sources"])
                assert got_total in sim.site.device(t["name"]).web.served, (t["ip"], got_total)
            if t["kind"] == "recording":
                assert got_total == t["total"], t["ip"]
        levels = {s["index"]: s["level"] for s in d["supplies"]}
        assert set(levels) == {s["index"] for s in t["supplies"]}, t["ip"]
        for s in t["supplies"]:
            lvl = levels[s["index"]]
            if s["level"] is None or s["level"] < 0:
                assert lvl is None
            elif t["kind"] == "recording":
                assert lvl == s["level"], (t["ip"], s, lvl)
            elif s["type_code"] not in (4, 8, 18):  # waste fills up; everything else only goes down
                assert lvl is not None and lvl >= s["level"], (t["ip"], s, lvl)


def test_non_printers_are_not_reported(sim):
    stored = {d["ip"] for d in sim.devices()}
    others = [d for d in sim.site.devices if not d.is_printer]
    assert len(others) >= 2
    for d in others:
        assert d.address not in stored, d.name


def test_counters_advance_between_cycles(sim):
    cycles = sim.cycles()
    assert len(cycles) >= 2
    dynamic = [d for d in sim.site.devices if d.is_printer and d.kind == "dynamic"]
    assert dynamic
    store = sim.cloud.store
    advanced = 0
    for d in dynamic:
        rec = [r for r in sim.devices() if r["ip"] == d.address][0]
        totals = [r["counters"]["total"] for r in store.history(sim.serial, rec["serial"])]
        assert totals == sorted(totals, reverse=True)  # newest first, never backwards
        advanced += totals[0] > totals[-1]
    assert advanced == len(dynamic)


def test_box_holds_no_listening_socket(sim):
    assert sim.box.poll() is None
    assert listening_sockets(sim.box.pid) == []
    # The check itself works: a listening socket of ours is seen.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    try:
        assert listening_sockets(os.getpid())
    finally:
        srv.close()


def test_fails_over_to_rescue_when_liberty_stops(sim):
    before = len(sim.cloud.store.uploads(sim.serial))
    sim.cloud.receivers["liberty"].stop()
    sim.wait_cycles(len(sim.cycles()) + 1, 120)
    later = sim.cloud.store.uploads(sim.serial)[before:]
    assert later and all(u["endpoint"] == "rescue" for u in later)
    assert sim.box.poll() is None
