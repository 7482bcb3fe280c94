"""The QEMU appliance, booted once: DHCP, one upload through the real network path, a port
scan that finds nothing, an image without a shell, and a power cut that leaves the flash intact.

The appliance runs under QEMU TCG inside a network namespace that the fixture creates
and deletes (simulator/netns.py); the site's one printer runs on the host's loopback
and is reached through a relay address on the namespace's bridge.
"""
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest
import yaml

from simulator import qemu
from simulator.runner import ROOT

SNMP_PORT = 17171        # the printer on the host's loopback; the box asks 161 on its relay address
PRINTER = "hp-m404dn"
LEASE_S = 24             # short: the box renews (T1, 12 s) while the test runs
ELF = b"\x7fELF"


def _site_with_one_printer(path):
    with open(os.path.join(ROOT, "simulator", "site.yaml")) as f:
        site = yaml.safe_load(f)
    site["devices"] = [d for d in site["devices"] if d["name"] == PRINTER]
    with open(path, "w") as f:
        yaml.safe_dump(site, f)
    return site["devices"][0]["address"]


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    why = qemu.unavailable()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("qemu")
    site_yaml = str(tmp / "site.yaml")
    printer = _site_with_one_printer(site_yaml)
    lines = []
    sim = qemu.QemuSimulation(str(tmp / "state"), snmp_port=SNMP_PORT, interval=600, site_yaml=site_yaml,
                              dhcp_lease_s=LEASE_S,
                              targets=[qemu.relay_address(printer)], echo=lines.append)
    try:
        sim.start()
        yield sim
    finally:
        sim.stop()
        assert not os.path.exists("/var/run/netns/" + sim.ns.name), "namespace left behind"


def _cpio_entries(data):
    """{path: (mode, bytes)} of a newc archive."""
    out, pos = {}, 0
    while True:
        head = data[pos:pos + 110]
        assert head[:6] == b"070701"
        f = [int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = f[1], f[6], f[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        body = data[pos:pos + size]
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, body)


def test_image_holds_no_shell_and_only_micropython_runs(box):
    with open(os.path.join(qemu.APPLIANCE, "appliance.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(qemu.APPLIANCE, "initramfs.cpio.gz"), "rb") as f:
        blob = f.read()
    assert hashlib.sha256(blob).hexdigest() == manifest["initramfs"]["sha256"]
    entries = _cpio_entries(gzip.decompress(blob))
    # the listing in appliance.json is the archive, file for file
    assert sorted("/" + n for n in entries) == sorted(e["path"] for e in manifest["contents"])
    names = {os.path.basename(n) for n in entries}
    assert not names & {"sh", "bash", "dash", "ash", "busybox", "getty", "agetty", "login", "sshd",
                        "dropbear", "telnetd", "python3"}
    executable = sorted(n for n, (mode, _) in entries.items() if mode & 0o170000 == 0o100000 and mode & 0o111)
    assert executable == ["init", "usr/bin/micropython", "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"]
    assert entries["init"][1].startswith(b"#!/usr/bin/micropython\n")    # the ROM, run by MicroPython
    elves = sorted(n for n, (mode, body) in entries.items() if body[:4] == ELF)
    assert [n for n in elves if not (n.endswith(".ko") or ".so" in n)] == ["usr/bin/micropython"]


def test_the_image_is_reproducible(box, tmp_path):
    from fbtool import appliance
    again = appliance.build(str(tmp_path), echo=lambda s: None)
    with open(os.path.join(qemu.APPLIANCE, "appliance.json")) as f:
        first = json.load(f)
    assert again["initramfs"]["sha256"] == first["initramfs"]["sha256"]
    assert again["kernel"]["sha256"] == first["kernel"]["sha256"]


def test_the_box_gets_its_address_from_the_simulators_dhcp_server(box):
    box.wait_for("a DHCP address", lambda: box.box_address(), 120)
    addr = box.box_address()
    assert addr in qemu.DHCP_POOL
    assert box.dhcp.address_of(qemu.MAC) == addr
    assert [k for k, mac, a, _ in box.dhcp.log if a == addr][-1] == "ack"


def test_the_box_renews_its_lease(box):
    mac = qemu.MAC.replace(":", "")
    box.wait_for("a lease renewal", lambda: sum(1 for k, m, _, _ in box.dhcp.log if k == "ack" and m == mac) >= 2,
                 LEASE_S * 2)
    acks = [(a, t) for k, m, a, t in box.dhcp.log if k == "ack" and m == mac]
    assert acks[1][0] == acks[0][0]                     # the same address, renewed
    assert box.box_address() == acks[0][0]


def test_one_upload_reaches_the_cloud_in_the_namespace(box):
    box.wait_cycles(1, timeout=240)
    devices = box.devices()
    assert len(devices) == 1, devices
    assert box.board_state()["time"], "the cloud's acknowledgement set the box's clock"


def _nmap(box, *args):
    r = subprocess.run(box.ns.exec_prefix() + ["nmap", "-n", "-Pn", "-oX", "-"] + list(args) + [box.box_address()],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    root = ET.fromstring(r.stdout)
    ports = root.findall(".//port")
    host = root.find("host")
    return host, [(p.get("protocol"), int(p.get("portid")), p.find("state").get("state")) for p in ports]


@pytest.mark.skipif(not shutil.which("nmap"), reason="nmap is not installed (make sysdeps installs it)")
def test_a_port_scan_finds_nothing_open(box):
    box.wait_for("a DHCP address", lambda: box.box_address(), 120)
    host, ports = _nmap(box, "-sS", "-p-", "-T4", "--max-retries", "1")
    assert host.find("status").get("state") == "up"
    assert [p for p in ports if p[2] == "open"] == []
    # every TCP port answered "closed": the scan reached the box, nothing listens
    closed = root_count = None
    extra = host.find(".//extraports")
    if extra is not None:
        closed = extra.get("state")
        root_count = int(extra.get("count"))
    assert closed == "closed" and root_count + len(ports) == 65535
    host, ports = _nmap(box, "-sU", "--top-ports", "20", "--max-retries", "1", "--defeat-icmp-ratelimit")
    assert [p for p in ports if p[2] == "open"] == []


def test_a_power_cut_mid_write_leaves_the_flash_intact(box):
    from fbtool import flash
    box.wait_cycles(1, timeout=240)
    seen = len(box.box_log)
    box.inject("button")            # upload now: the uplink writes its state and trims the spool
    deadline = time.time() + 30
    while time.time() < deadline and not any("button" in line for line in box.box_log[seen:]):
        time.sleep(0.05)
    time.sleep(0.3)
    box.hw.power_off()              # QEMU killed: whatever the guest had not written is lost
    board = flash.load_board(qemu.BOARD)
    bs = board["flash"]["block_size"]
    for name in ("loader", "slot_a", "identity", "data"):
        fs = flash.read_lfs(flash.read_partition(box.flash, board, name), bs)
        for root, _, files in fs.walk("/"):
            for fn in files:
                with fs.open(root.rstrip("/") + "/" + fn, "rb") as f:
                    f.read()
    data = flash.read_lfs(flash.read_partition(box.flash, board, "data"), bs)
    with data.open("config.json", "r") as f:
        assert json.load(f)["endpoints"]


def test_rom_board_and_yaml_agree_on_the_watchdog_and_modules():
    import re
    from fbtool import appliance
    board = appliance.board_yaml()
    for name in ("rom.py", "board.py"):
        with open(os.path.join(ROOT, "board", qemu.BOARD, name)) as f:
            src = f.read()
        assert int(re.search(r"^WATCHDOG_S = (\d+)", src, re.M).group(1)) == board["hardware"]["watchdog_s"]
    mods = [os.path.basename(m)[:-3] for m in board["kernel"]["modules"]]
    # every virtio device needs the bus, the ring and the PCI transport before it
    assert mods.index("virtio_pci") > max(mods.index(m) for m in ("virtio", "virtio_ring", "virtio_pci_modern_dev",
                                                                   "virtio_pci_legacy_dev"))
    assert mods.index("virtio_net") > mods.index("net_failover") > mods.index("failover")
    assert mods.index("i6300esb") > mods.index("watchdog")
