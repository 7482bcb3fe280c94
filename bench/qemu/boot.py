"""The QEMU appliance (TCG): boot to first upload, and the image sizes.

Boots the appliance RUNS times (default 3) against a one-printer site and the cloud in
a network namespace and prints, per boot, the time from QEMU's start to the ROM's first
line, to the DHCP lease, and to the first upload the cloud acknowledged; then the
sizes of the kernel, the initramfs and what is in it. Needs root (namespaces), QEMU.
Usage: .venv/bin/python bench/qemu/boot.py [RUNS]
"""
import os
import statistics
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from simulator import qemu  # noqa: E402

SNMP_PORT = 17161
PRINTER = "hp-m404dn"


def one_boot(tmp):
    with open(os.path.join(ROOT, "simulator", "site.yaml")) as f:
        site = yaml.safe_load(f)
    site["devices"] = [d for d in site["devices"] if d["name"] == PRINTER]
    site_yaml = os.path.join(tmp, "site.yaml")
    with open(site_yaml, "w") as f:
        yaml.safe_dump(site, f)
    marks = {}
    t0 = [None]

    def echo(line):
        now = time.monotonic()
        if t0[0] is None:
            return
        for key, text in (("rom", "rom: fleetbox"), ("dhcp", "dhcp: bound"), ("upload", "box: uploaded")):
            if key not in marks and text in line:
                marks[key] = now - t0[0]

    sim = qemu.QemuSimulation(os.path.join(tmp, "state"), snmp_port=SNMP_PORT, interval=600, site_yaml=site_yaml,
                              targets=[qemu.relay_address(site["devices"][0]["address"])], echo=echo)
    try:
        sim.prepare()
        sim.start_network()
        sim.start_site()
        sim.start_cloud()
        sim.flash_box()
        t0[0] = time.monotonic()
        sim.boot_box()
        sim.wait_cycles(1, timeout=300)
    finally:
        sim.stop()
    return marks


def main(runs):
    why = qemu.unavailable()
    if why:
        print("skipped: " + why)
        return 0
    manifest = qemu.build_appliance(lambda s: None)
    rows = []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            m = one_boot(tmp)
        rows.append(m)
        print("boot %d: ROM running %.1f s, DHCP lease %.1f s, first upload %.1f s" % (
            i + 1, m.get("rom", float("nan")), m.get("dhcp", float("nan")), m.get("upload", float("nan"))),
            flush=True)
    ups = [r["upload"] for r in rows if "upload" in r]
    if ups:
        print("boot to first upload (TCG): median %.1f s, min %.1f s, max %.1f s over %d boots" % (
            statistics.median(ups), min(ups), max(ups), len(ups)))
    files = [e for e in manifest["contents"] if "size" in e]
    print("kernel %s: %d bytes; initramfs (gzip): %d bytes; %d files, %d bytes unpacked" % (
        manifest["kernel"]["version"], manifest["kernel"]["size"], manifest["initramfs"]["size"],
        len(files), sum(e["size"] for e in files)))
    for e in sorted(files, key=lambda e: -e["size"]):
        print("  %9d  %s" % (e["size"], e["path"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
