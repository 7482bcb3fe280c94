"""The simulation: a site of printers, the cloud, and one sim board booted from its flash image.

Used by `python -m simulator run` (make sim) and by the end-to-end tests.
"""
import base64
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from simulator import pki
from simulator.cloud import Cloud

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
log = logging.getLogger("fleetbox.sim")


class SimError(Exception):
    pass


def _tool(name):
    return os.path.join(BIN, name)


def site_networks(devices):
    """The /24 networks holding the site's devices: what an installer would configure."""
    nets = []
    for d in devices:
        net = str(ipaddress.ip_network(d.address + "/24", strict=False))
        if net not in nets:
            nets.append(net)
    return nets


class Simulation:
    def __init__(self, state_dir, snmp_port=None, cloud_port=443, interval=15, serial="SIM-0001",
                 liberty="127.77.0.1", rescue="127.77.0.2", site_yaml=None, echo=print):
        self.state = os.path.abspath(state_dir)
        self.snmp_port = snmp_port
        self.cloud_port = cloud_port
        self.interval = interval
        self.serial = serial
        self.endpoints = {"liberty": (liberty, cloud_port), "rescue": (rescue, cloud_port)}
        self.site_yaml = site_yaml
        self.echo = echo
        self.site = self.cloud = self.box = None
        self.flash = os.path.join(self.state, "flash.img")
        self.board_dir = os.path.join(self.state, "board")
        self.box_log = []
        self._reader = None

    # -- set-up
    def _run_tool(self, *args):
        r = subprocess.run([_tool("fbtool")] + list(args), capture_output=True, text=True)
        if r.returncode != 0:
            raise SimError("fbtool %s failed: %s" % (args[0], (r.stderr or r.stdout).strip()))
        self.echo(r.stdout.strip())

    def prepare(self):
        """CA, identity, firmware image: everything that exists before the box is flashed."""
        os.makedirs(self.board_dir, exist_ok=True)
        self.ca = pki.ensure_ca(self.state)
        self.manifest = os.path.join(self.state, "manifest.json")
        self.identity_path = os.path.join(self.state, "identity.json")
        if not os.path.exists(self.identity_path):
            self._run_tool("identity", self.serial, "-o", self.identity_path, "--manifest", self.manifest)
        self.image = os.path.join(self.state, "firmware.fbi")
        self._run_tool("build", "-o", self.image)

    def start_site(self):
        from simulator.site import Site
        self.site = Site.from_yaml(self.site_yaml, port_override=self.snmp_port)
        self.site.start()
        self.echo("site: %d devices (%d printers) on %s" % (
            len(self.site.devices), sum(1 for d in self.site.devices if d.is_printer),
            ", ".join(site_networks(self.site.devices))))

    def start_cloud(self):
        # The box is flashed afresh each run (its sequence numbers restart), so the cloud starts empty too.
        db = os.path.join(self.state, "cloud.sqlite")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        self.cloud = Cloud(self.state, db, self.manifest,
                           self.endpoints, self.ca).start()
        for name, (addr, port) in self.endpoints.items():
            self.echo("cloud: %s on https://%s:%d" % (name, addr, port))

    def box_config(self):
        certs = [os.path.join(self.state, n + ".pem") for n in self.endpoints]
        return {
            "targets": site_networks(self.site.devices),
            "communities": ["public"],
            "snmp_port": self.snmp_port or 161,
            "timeout_ms": 700,
            "retries": 1,
            "workers": 64,
            "intervals": {"full": self.interval},
            "endpoints": [self.cloud.box_config(n) for n in self.endpoints],
            "ca": base64.b64encode(pki.der(self.ca[1])).decode(),
            "pins": [pki.spki_pin(c) for c in certs],
        }

    def flash_box(self):
        cfg_path = os.path.join(self.state, "config.json")
        with open(cfg_path, "w") as f:
            json.dump(self.box_config(), f, indent=1)
        self._run_tool("flash", "--sim", self.flash, "--image", self.image, "--identity", self.identity_path,
                       "--config", cfg_path, "--erase")

    def boot_box(self):
        env = dict(os.environ, FLEETBOX_SIM_DIR=self.board_dir)
        self.box = subprocess.Popen([_tool("micropython"), "-X", "heapsize=1M", os.path.join(ROOT, "board", "sim", "rom.py"),
                                     self.flash], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env=env, start_new_session=True)
        self._reader = threading.Thread(target=self._read_box, daemon=True)
        self._reader.start()
        self.echo("box: booting the sim board from %s (pid %d)" % (self.flash, self.box.pid))

    def _read_box(self):
        with open(os.path.join(self.state, "box.log"), "a") as logf:
            for line in self.box.stdout:
                line = line.rstrip()
                self.box_log.append(line)
                logf.write(line + "\n")
                logf.flush()
                self.echo("  | " + line)

    def start(self):
        self.prepare()
        self.start_site()
        self.start_cloud()
        self.flash_box()
        self.boot_box()
        return self

    # -- observation
    def led(self):
        try:
            with open(os.path.join(self.board_dir, "led")) as f:
                return f.read()
        except OSError:
            return None

    def cycles(self):
        return self.cloud.store.cycles(self.serial)

    def wait_cycles(self, n, timeout):
        """Wait until the cloud holds n complete collection cycles from the box."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.box.poll() is not None:
                raise SimError("the box stopped (exit %s):\n%s" % (self.box.returncode, "\n".join(self.box_log[-20:])))
            # A cycle is complete once the next one has started arriving, or the box said so.
            done = self.cycles()
            if len(done) >= n and self._cycle_logged(n):
                return done
            time.sleep(0.5)
        raise SimError("the cloud received %d of %d cycles within %d s" % (len(self.cycles()), n, timeout))

    def _cycle_logged(self, n):
        return sum(1 for line in self.box_log if "uploaded" in line) >= n

    def devices(self):
        return self.cloud.store.devices(self.serial)

    # -- tear-down
    def stop(self):
        if self.box and self.box.poll() is None:
            os.killpg(self.box.pid, signal.SIGTERM)
            try:
                self.box.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.box.pid, signal.SIGKILL)
                self.box.wait()
        if self.cloud:
            self.cloud.stop()
        if self.site:
            self.site.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
