"""The simulation: a site of printers, the cloud, and one sim board booted from its flash image.

Used by `python -m simulator run` (make sim) and by the end-to-end tests.
"""
import base64
import ipaddress
import json
import logging
import os
import subprocess
import sys
import threading
import time

from simulator import pki
from cloud.server import Cloud
from simulator.hardware import Hardware

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
log = logging.getLogger("fleetbox.sim")


class SimError(Exception):
    pass


FAULTS = """\
  power-cut [SECONDS]        cut the power (SIGKILL the box) and power it on again (default 1 s)
  power-off | power-on       cut the power / power on
  cable-pull | cable-plug    pull / plug the ethernet cable (the box's network is cut meanwhile)
  poe | adapter              switch the power source
  button [MS] | long-press   press the button (held 200 ms; long-press holds 6 s: reboot)
  hang                       hang the firmware's loop (the watchdog resets the box)
  flash-full | flash-eio     every write to the box's data partition fails (ENOSPC / EIO) ...
  flash-ok                   ... until this
  liberty-down | liberty-up  stop / start a cloud endpoint (also rescue-down, rescue-up)
  hostile [ENDPOINT|both]    crafted replies (bad headers, lengths, types, seqs, forged, replayed,
                             held back; one after another) from liberty (default), rescue or both
  hostile-off                the real endpoints answer again
  printer NAME KIND [k=v]    fault a dynamic printer: down, up, unreachable, slow [delay=S],
                             lossy [loss=0.5], jammed, doorOpen, noPaper, clear
  update [VERSION [COUNTER]] sign this tree as VERSION (default: the next), publish it and roll it out
                             to the box (with --update: the box trusts the sim's signing root)
  status                     one line: LED, link, power, boots, resets, cycles, printers"""


def _tool(name):
    return os.path.join(BIN, name)


def board_hardware(board="sim"):
    """The `hardware:` section of board/<board>/board.yaml (watchdog_s, rtc, ...)."""
    import yaml
    with open(os.path.join(ROOT, "board", board, "board.yaml")) as f:
        return yaml.safe_load(f).get("hardware", {})


def site_networks(devices):
    """The /24 networks holding the site's devices: what an installer would configure."""
    nets = []
    for d in devices:
        net = str(ipaddress.ip_network(d.address + "/24", strict=False))
        if net not in nets:
            nets.append(net)
    return nets


def _backstage(address):
    """Where an endpoint listens while a hostile server holds its address: .N -> .N+100."""
    a = ipaddress.ip_address(address)
    return str(a + 100)


class _HostileKit:
    """What simulator.hostile needs of its surroundings: certificates, cloud, identity, store."""

    def __init__(self, state_dir, cloud, identity):
        self.dir, self.cloud, self.identity, self.store = state_dir, cloud, identity, cloud.store


class Simulation:
    board = "sim"      # the board the firmware is built for; QemuSimulation: qemu-x86_64

    def __init__(self, state_dir, snmp_port=None, cloud_port=443, interval=15, serial="SIM-0001",
                 liberty="127.77.0.1", rescue="127.77.0.2", site_yaml=None, echo=print, watchdog_s=None, rtc=None,
                 targets=None, web_ports=None, log_level="info", fresh=False, updates=False):
        self.state = os.path.abspath(state_dir)
        # fresh: a factory-fresh box (identity only) that provisions itself once the dealer claims it;
        # else a box flashed with its configuration (fbtool flash --config), as before provisioning
        self.fresh = fresh
        self.targets = targets    # default: every /24 of the site
        self.web_ports = dict(web_ports or {})   # printers' web pages: {80: N, 443: M} (default 80/443)
        self.snmp_port = snmp_port
        self.cloud_port = cloud_port
        self.interval = interval
        self.serial = serial
        self.endpoints = {"liberty": (liberty, cloud_port), "rescue": (rescue, cloud_port)}
        self.site_yaml = site_yaml
        self.echo = echo
        self.site = self.cloud = None
        self.flash = os.path.join(self.state, "flash.img")
        self.board_dir = os.path.join(self.state, "board")
        self.box_log = []
        self.log_level = log_level    # the box's log threshold (config log_level, docs/logging.md)
        hw = board_hardware()
        self.watchdog_s = watchdog_s or hw.get("watchdog_s", 60)
        self.rtc = hw.get("rtc", False) if rtc is None else rtc
        self.hw = None
        self.updates = None       # simulator.updates.SimUpdates: signed updates (the box trusts its root)
        if updates:
            from simulator.updates import SimUpdates
            self.updates = SimUpdates(self)
        self._hostile = {}        # endpoint -> the HostileCloud holding its address (the hostile fault)
        self._hostile_requests = []   # (mode, seq) answered by hostile spells that ended

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
        if self.fresh:
            self._factory_setup()
        elif not os.path.exists(self.identity_path):
            self._run_tool("identity", self.serial, "-o", self.identity_path, "--manifest", self.manifest)
        self.image = os.path.join(self.state, "firmware.fbi")
        self._run_tool("build", "--board", self.board, "-o", self.image)

    def _factory_setup(self):
        """The factory CA exists before the cloud starts (it checks box certificates against it)."""
        from fbtool.factory import ensure_factory_ca
        ensure_factory_ca(os.path.join(self.state, "factory"))
        self.factory_manifest = os.path.join(self.state, "factory-manifest.json")
        self.label = os.path.join(self.state, "label.txt")
        self.identity_path = os.path.join(self.state, "factory-identity.json")
        self.dealer_token = os.path.join(self.state, "dealer.token")

    def dealer_account(self):
        """The dealer's account in the fresh cloud, as `fleetbox-cloud admin` makes it: dealer, customer,
        site, a manager and the manager's API token (in a 0600 file) for fbtool cloud."""
        import secrets

        from cloud import accounts, tenancy
        from cloud.audit import audit
        with self.cloud.store.engine.begin() as c:
            dealer = tenancy.add_dealer(c, "Sim Dealer", owns_keys=True)
            self.site_id = tenancy.add_site(c, tenancy.add_customer(c, dealer, "Sim Customer"), "Sim Site")
            uid = accounts.add_user(c, dealer, "manager@sim.example", secrets.token_urlsafe(16), "manager")
            token = accounts.issue(c, uid, "token", "simulator")
            audit(c, "cli:simulator", "user", "manager@sim.example", {"role": "manager"}, dealer_id=dealer)
        fd = os.open(self.dealer_token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)

    def factory(self):
        """The factory's work, once the cloud's ports are known: the box's key, certificate and claim
        code, the cloud's manifest entry, the provisioning endpoints and server pins the box trusts."""
        for path in (self.identity_path, self.factory_manifest):
            if os.path.exists(path):
                os.remove(path)
        args = ["factory", self.serial, "-o", self.identity_path, "--manifest", self.factory_manifest,
                "--label", self.label, "--factory-dir", os.path.join(self.state, "factory"),
                "--server-ca", os.path.join(self.state, "ca.pem")]
        for name, (addr, _) in self.endpoints.items():
            port = self.cloud.receivers[name].port
            args += ["--pin", pki.spki_pin(self.cloud.receivers[name].cert),
                     "--endpoint", "%s=https://%s.fleetbox.test:%d/v1/provision@%s" % (name, name, port, addr)]
        self._run_tool(*args)

    def dealer(self, *args, env=None, token_file=None):
        """fbtool cloud ARGS against liberty, as the dealer's manager (or token_file's user) runs it; its output."""
        addr, port = self.endpoints["liberty"][0], self.cloud.receivers["liberty"].port
        r = subprocess.run([_tool("fbtool"), "cloud"] + list(args) + [
            "--url", "https://%s:%d" % (addr, port), "--ca", os.path.join(self.state, "ca.pem"),
            "--token-file", token_file or self.dealer_token], capture_output=True, text=True,
            env=dict(os.environ, **(env or {})))
        if r.returncode != 0:
            raise SimError("fbtool cloud %s failed: %s" % (args[0], (r.stderr or r.stdout).strip()))
        return r.stdout.strip()

    def claim(self, code=None):
        """The dealer types the label's claim code into the cloud and gives the box its configuration."""
        if code is None:
            from fbtool.cloudcli import label_code
            code = label_code(self.label)
        self.echo(self.dealer("claim", self.serial, "--site", str(self.site_id),
                              env={"FLEETBOX_CLAIM_CODE": code}))
        self.push_config(self.box_config())

    def push_config(self, cfg):
        path = os.path.join(self.state, "cloud-config.json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        self.echo(self.dealer("config", self.serial, "--file", path))

    def provisioning(self):
        """The cloud's view of the box (state, versions, refusal, alerts), or None."""
        rows = self.cloud.provisioning.view(self.serial) if self.cloud.provisioning else []
        return rows[0] if rows else None

    def start_site(self):
        from simulator.site import Site
        self.site = Site.from_yaml(self.site_yaml, port_override=self.snmp_port, web_ports=self.web_ports)
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
        factory = None
        if self.fresh:
            factory = (self.factory_manifest, os.path.join(self.state, "factory", "factory-ca.pem"))
        self.cloud = Cloud(self.state, db, self.manifest, self.endpoints, self.ca, factory=factory).start()
        if self.fresh:
            self.dealer_account()
        for name, (addr, port) in self.endpoints.items():
            self.echo("cloud: %s on https://%s:%d" % (name, addr, port))

    def box_config(self):
        certs = [os.path.join(self.state, n + ".pem") for n in self.endpoints]
        return {
            "targets": self.targets or site_networks(self.site.devices),
            "communities": ["public"],
            "snmp_port": self.snmp_port or 161,
            "timeout_ms": 700,
            "retries": 1,
            "workers": 64,
            "intervals": {"full": self.interval},
            "endpoints": [self.cloud.box_config(n) for n in self.endpoints],
            "ca": base64.b64encode(pki.der(self.ca[1])).decode(),
            "pins": [pki.spki_pin(c) for c in certs],
            "web_ports": {str(k): int(v) for k, v in self.web_ports.items()},
            "log_level": self.log_level,
            "config_check_s": max(10, self.interval),
        }

    def flash_box(self):
        root = ["--root", self.updates.root()] if self.updates else []
        if self.fresh:   # identity only: the configuration comes from the cloud once claimed
            self._run_tool("flash", "--sim", self.flash, "--image", self.image, "--identity", self.identity_path,
                           "--erase", *root)
            return
        cfg_path = os.path.join(self.state, "config.json")
        with open(cfg_path, "w") as f:
            json.dump(self.box_config(), f, indent=1)
        self._run_tool("flash", "--sim", self.flash, "--image", self.image, "--identity", self.identity_path,
                       "--config", cfg_path, "--erase", *root)

    def boot_box(self):
        env = dict(os.environ, FLEETBOX_SIM_RTC="1" if self.rtc else "0")
        command = [_tool("micropython"), "-X", "heapsize=1M", os.path.join(ROOT, "board", "sim", "rom.py"), self.flash]
        self._logf = open(os.path.join(self.state, "box.log"), "a")
        self._log_lock = threading.Lock()
        self.hw = Hardware(self.board_dir, command, env, self._box_line, self.watchdog_s, self.echo)
        self.hw.power_on()
        self.echo("box: booting the sim board from %s (pid %d)" % (self.flash, self.box.pid))

    @property
    def box(self):
        """The box's current MicroPython process (a new one after every reset)."""
        return self.hw.proc if self.hw else None

    def _box_line(self, line):
        with self._log_lock:
            self.box_log.append(line)
            self._logf.write(line + "\n")
            self._logf.flush()
        self.echo("  | " + line)

    def start(self, claim=True):
        """claim (fresh box): claim it as the dealer does once it has asked the cloud."""
        self.prepare()
        self.start_site()
        self.start_cloud()
        if self.fresh:
            self.factory()
        self.flash_box()
        self.boot_box()
        if self.fresh and claim:
            self.wait_for("the box's first provisioning request",
                          lambda: (self.provisioning() or {}).get("last_contact"), 60)
            self.echo("cloud: %s asked to be provisioned; LED %s" % (self.serial, self.led()))
            self.claim()
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
            if self.hw.exit is not None:
                raise SimError("the box stopped (exit %s):\n%s" % (self.hw.exit, "\n".join(self.box_log[-20:])))
            # A cycle is complete once the next one has started arriving, or the box said so.
            done = self.cycles()
            if len(done) >= n and self._cycle_logged(n):
                return done
            time.sleep(0.5)
        raise SimError("the cloud received %d of %d cycles within %d s" % (len(self.cycles()), n, timeout))

    def _cycle_logged(self, n):
        if self.log_level not in ("debug", "info"):
            return True   # the box does not say it uploaded: the cloud's count alone decides
        return sum(1 for line in self.box_log if "I main: uploaded " in line) >= n

    def devices(self):
        return self.cloud.store.devices(self.serial)

    def board_state(self):
        """The box's own view of its hardware (board/sim/board.py publishes it), or None."""
        return self.hw.state() if self.hw else None

    def wait_for(self, what, predicate, timeout):
        """Wait until predicate() is true; SimError naming `what` (with the box's log) otherwise."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.hw.exit is not None:
                raise SimError("the box stopped (exit %s) while waiting for %s" % (self.hw.exit, what))
            if predicate():
                return
            time.sleep(0.2)
        raise SimError("no %s within %d s; box log:\n%s" % (what, timeout, "\n".join(self.box_log[-15:])))

    # -- fault injection: the same commands from the command line and from tests
    def inject(self, command):
        """Apply one fault-injection command (see FAULTS); returns what was done."""
        words = command.split()
        if not words:
            raise SimError("empty command")
        verb, args = words[0], words[1:]
        hw = self.hw
        if verb == "power-cut":
            hw.power_cut(float(args[0]) if args else 1.0)
            return "power cut, box booting again"
        if verb == "power-off":
            hw.power_off()
            return "power off"
        if verb == "power-on":
            hw.power_on()
            return "power on"
        if verb in ("cable-pull", "cable-plug"):
            hw.cable(verb == "cable-plug")
            return "cable " + ("plugged in" if verb == "cable-plug" else "pulled")
        if verb in ("poe", "adapter"):
            hw.set_power_source(verb)
            return "power source: " + verb
        if verb in ("button", "long-press"):
            held = int(args[0]) if args else (6000 if verb == "long-press" else 200)
            hw.button(held)
            return "button held %d ms" % held
        if verb in ("flash-full", "flash-eio", "flash-ok"):
            mode = {"flash-full": "enospc", "flash-eio": "eio", "flash-ok": "ok"}[verb]
            hw.flash(mode)
            return "flash: " + mode
        if verb == "hang":
            hw.hang()
            return "firmware told to hang (the watchdog should reset it)"
        if verb == "hostile":
            which = args[0] if args else "liberty"
            names = list(self.endpoints) if which == "both" else [which]
            if any(n not in self.endpoints for n in names):
                raise SimError("hostile takes %s or both, not %r" % (" or ".join(self.endpoints), which))
            for name in names:
                self._hostile_on(name)
            return "hostile replies from " + ", ".join(names)
        if verb == "hostile-off":
            names = sorted(self._hostile)
            for name in names:
                self._hostile_off(name)
            return "real replies from " + (", ".join(names) or "every endpoint (none was hostile)")
        if verb.endswith(("-down", "-up")) and verb.rsplit("-", 1)[0] in self.cloud.receivers:
            name, how = verb.rsplit("-", 1)
            r = self.cloud.receivers[name]
            if how == "down" and r.running:
                r.stop()
            elif how == "up" and not r.running:
                r.start()
            return "%s %s" % (name, how)
        if verb == "printer" and len(args) >= 2:
            params = dict(a.split("=", 1) for a in args[2:] if "=" in a)
            from simulator.site import SiteError
            try:
                self.site.set_fault(args[0], args[1], **params)
            except SiteError as e:
                raise SimError(str(e))
            return "printer %s: %s %s" % (args[0], args[1], " ".join(args[2:]))
        if verb == "status":
            return self.status_line()
        if verb == "update":
            if self.updates is None:
                raise SimError("update: run with --update (the box must be flashed with the sim's signing root)")
            rid = self.updates.offer(*args[:2])
            return "rollout %d to %s: follow it with `fbtool update status %d`" % (rid, self.serial, rid)
        raise SimError("unknown command %r; commands:\n%s" % (command, FAULTS))

    # -- the hostile fault: a crafted-reply server takes the endpoint's address, the real endpoint
    # moves behind it (for the modes that relay) and comes back when the fault ends
    def _hostile_on(self, name):
        from simulator.hostile import HostileCloud
        if name in self._hostile:
            return
        r = self.cloud.receivers[name]
        address, port = self.endpoints[name][0], r.port
        was_running = r.running
        if was_running:
            r.stop()
        r.address = _backstage(address)
        if was_running:
            r.start()
        with open(self.identity_path) as f:
            identity = json.load(f)
        kit = _HostileKit(self.state, self.cloud, identity)
        self._hostile[name] = HostileCloud(kit, address, mode="rotate", port=port, endpoint=name)

    def hostile_replies(self):
        """{mode: requests answered so} over every hostile spell so far."""
        counts = {}
        for mode, _ in self._hostile_requests + [r for h in self._hostile.values() for r in h.requests]:
            counts[mode] = counts.get(mode, 0) + 1
        return dict(sorted(counts.items()))

    def _hostile_off(self, name):
        hostile = self._hostile.pop(name)
        hostile.stop()
        self._hostile_requests += hostile.requests
        r = self.cloud.receivers[name]
        was_running = r.running
        if was_running:
            r.stop()
        r.address = self.endpoints[name][0]
        if was_running:
            r.start()

    def status_line(self):
        st = self.board_state() or {}
        link = {True: "up", False: "down"}.get(st.get("link"), "-")
        return "LED %-14s link %-4s power %-7s boots %d resets %s cycles %d printers %d" % (
            self.led() or "-", link, st.get("power") or "-", self.hw.boots,
            ",".join("%s=%d" % kv for kv in sorted(self.hw.resets.items())), len(self.cycles()), len(self.devices()))

    # -- tear-down
    def stop(self):
        if self.hw:
            self.hw.shutdown()
        for hostile in self._hostile.values():
            hostile.stop()
        if self.cloud:
            self.cloud.stop()
        if self.site:
            self.site.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
