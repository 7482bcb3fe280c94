"""The simulation with the box as the QEMU appliance (board qemu-x86_64): `make sim-qemu`.

The appliance (fbtool appliance: a kernel and an initramfs whose only program is
MicroPython) boots under QEMU inside a network namespace (simulator/netns.py). Its
flash is the raw image `fbtool flash --raw` writes, attached as a virtio disk; its
NIC is a virtio NIC on the tap device of the namespace's bridge, where this module's
DHCP server (simulator/dhcp.py) gives it an address. The cloud listens inside the
namespace; the site's printers run on the host's loopback as in `make sim` and are
reached through relay addresses on the bridge (192.0.2.N for 127.31.0.N).

The hardware here is QEMU: the serial console carries the box's log, its LED and
state lines ("board: led ...", "board: state {...}") and the button; QEMU's monitor
pulls the cable (set_link); a power cut kills QEMU; the watchdog is the emulated
i6300esb, which resets the VM by itself.
"""
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

from simulator import netns
from simulator.dhcp import Server as DhcpServer
from simulator.runner import ROOT, SimError, Simulation, _tool

BOARD = "qemu-x86_64"
APPLIANCE = os.path.join(ROOT, "build", BOARD, "appliance")
LIBERTY = "192.0.2.2"
RESCUE = "192.0.2.3"
DHCP_POOL = ["192.0.2.%d" % i for i in range(200, 220)]
MAC = "52:54:00:fb:00:01"
BOOT_BANNER = "rom: fleetbox qemu-x86_64 ROM"


def qemu_binary():
    return shutil.which("qemu-system-x86_64")


def unavailable():
    """Why the QEMU appliance cannot run here, or None."""
    if not qemu_binary():
        return "qemu-system-x86_64 is not installed (make sysdeps installs it)"
    return netns.available()


def build_appliance(echo=print):
    """fbtool appliance (cached packages make it a few seconds); returns its manifest."""
    r = subprocess.run([_tool("fbtool"), "appliance", "-o", APPLIANCE], capture_output=True, text=True)
    if r.returncode != 0:
        raise SimError("fbtool appliance failed: %s" % (r.stderr or r.stdout).strip())
    echo(r.stdout.strip().splitlines()[-2])
    with open(os.path.join(APPLIANCE, "appliance.json")) as f:
        return json.load(f)


class Appliance:
    """QEMU as the box's hardware: the same surface as simulator.hardware.Hardware."""

    def __init__(self, ns, flash, on_line, echo=print, state_dir=None, mac=MAC, memory_mb=256):
        self.ns = ns
        self.flash = flash
        self.on_line = on_line
        self.echo = echo
        self.mac = mac
        self.memory_mb = memory_mb
        self.dir = state_dir or os.path.dirname(flash)
        self.monitor_path = os.path.join(self.dir, "qemu-monitor.sock")
        with open(os.path.join(APPLIANCE, "appliance.json")) as f:
            self.cmdline = json.load(f)["cmdline"]
        self.proc = None
        self.powered = False
        self.exit = None
        self.boots = 0
        self.resets = {"watchdog": 0, "reboot": 0, "power": 0}
        self._led = None
        self._state = None
        self._link = True
        self._boot_expected = True
        self._lock = threading.RLock()
        self.boot_times = []      # monotonic time of each power-on

    def command(self):
        return self.ns.exec_prefix() + [
            qemu_binary(), "-accel", "tcg", "-m", str(self.memory_mb), "-smp", "1",
            "-no-user-config", "-nodefaults", "-display", "none",
            "-kernel", os.path.join(APPLIANCE, "vmlinuz"),
            "-initrd", os.path.join(APPLIANCE, "initramfs.cpio.gz"),
            "-append", self.cmdline,
            "-serial", "stdio",
            "-drive", "file=%s,format=raw,if=virtio,cache=writeback" % self.flash,
            "-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no" % netns.TAP,
            "-device", "virtio-net-pci,netdev=n0,mac=%s,romfile=" % self.mac,
            "-device", "i6300esb", "-action", "watchdog=reset",
            "-monitor", "unix:%s,server=on,wait=off" % self.monitor_path,
        ]

    # -- power
    def power_on(self):
        with self._lock:
            if self.powered and self.proc and self.proc.poll() is None:
                return
            self.exit = None
            self._led = self._state = None
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            self.powered = True
            self._boot_expected = True
            self.boot_times.append(time.monotonic())
            threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
            if not self._link:
                threading.Thread(target=self._relink, daemon=True).start()

    def _relink(self):
        # QEMU starts with the cable in; put it back the way it was once the monitor is up.
        for _ in range(50):
            try:
                self.monitor("set_link n0 off")
                return
            except OSError:
                time.sleep(0.1)

    def power_off(self):
        with self._lock:
            self.powered = False
            self._kill()

    def power_cut(self, off_s=1.0):
        self.power_off()
        self.resets["power"] += 1
        self.echo("hardware: power cut for %.1f s" % off_s)
        time.sleep(off_s)
        self.power_on()

    def shutdown(self):
        self.power_off()

    def _kill(self):
        p = self.proc
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(10)

    def running(self):
        return self.powered and self.proc is not None and self.proc.poll() is None

    def _read(self, proc):
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").replace("\r", "").rstrip()
            if "\x1b" in line:          # the BIOS clearing the screen
                line = line[line.rfind("\x1b") + 1:].lstrip("[0123456789;?hlJmc")
            if not line:
                continue
            self._observe(line)
            self.on_line(line)
        code = proc.wait()
        with self._lock:
            if proc is self.proc and self.powered:
                self.exit = code
                self.powered = False
                self.echo("hardware: the appliance powered off (QEMU exit %d)" % code)

    def _observe(self, line):
        if line.startswith(BOOT_BANNER):
            if self.boots and not self._boot_expected:
                # the VM reset by itself: the i6300esb fired (or the kernel panicked, panic=1)
                self.resets["watchdog"] += 1
            self._boot_expected = False
            self.boots += 1
        elif line.startswith("rom: reset"):
            self.resets["reboot"] += 1
            self._boot_expected = True
        elif line.startswith("board: led "):
            self._led = line[len("board: led "):].strip()
        elif line.startswith("board: state "):
            try:
                self._state = json.loads(line[len("board: state "):])
            except ValueError:
                pass

    # -- inputs
    def monitor(self, command):
        """One command on QEMU's human monitor; returns its answer."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        try:
            s.connect(self.monitor_path)
            s.recv(4096)                          # banner and prompt
            s.sendall(command.encode() + b"\n")
            time.sleep(0.2)
            return s.recv(4096).decode("utf-8", "replace")
        finally:
            s.close()

    def cable(self, plugged):
        self._link = plugged
        if self.running():
            self.monitor("set_link n0 %s" % ("on" if plugged else "off"))

    def _console(self, line):
        p = self.proc
        if p is None or p.poll() is not None:
            raise SimError("the appliance is not running")
        p.stdin.write(line.encode() + b"\n")
        p.stdin.flush()

    def set_power_source(self, source):
        if source not in ("poe", "adapter"):
            raise ValueError("power source is 'poe' or 'adapter', not %r" % source)
        self._console("power " + source)

    def button(self, held_ms=200):
        self._console("button %d" % int(held_ms))

    def hang(self):
        """Make the firmware hang in a loop that never yields: the i6300esb resets the VM."""
        self._console("hang")

    # -- outputs
    def led(self):
        return self._led

    def state(self):
        return self._state


def relay_address(address):
    """The bridge address that stands for a site device on the host's loopback (127.31.0.N -> 192.0.2.N)."""
    last = int(ipaddress.IPv4Address(address)) & 0xFF
    if last in (0, 1, 2, 3, 255) or "192.0.2.%d" % last in DHCP_POOL:
        raise SimError("site device %s has no free relay address on %s" % (address, netns.NETWORK))
    return "192.0.2.%d" % last


class QemuSimulation(Simulation):
    """Simulation with the QEMU appliance as the box; the same faults and observations."""

    def __init__(self, state_dir, dhcp_lease_s=600, **kw):
        kw.setdefault("liberty", LIBERTY)
        kw.setdefault("rescue", RESCUE)
        Simulation.__init__(self, state_dir, **kw)
        self.ns = netns.Namespace()
        self.dhcp = None
        self.dhcp_lease_s = dhcp_lease_s
        self.relays = []
        self.boot_started = None

    board = BOARD

    def prepare(self):
        Simulation.prepare(self)
        self.appliance = build_appliance(self.echo)

    def start_network(self):
        why = unavailable()
        if why:
            raise SimError("the QEMU appliance cannot run here: " + why)
        self.ns.create()
        for _, (addr, _) in sorted(self.endpoints.items()):
            self.ns.add_address(addr)
        self.dhcp = DhcpServer(netns.BRIDGE, netns.ROUTER, netns.NETWORK, DHCP_POOL, router=netns.ROUTER,
                               dns=[netns.ROUTER], lease_s=self.dhcp_lease_s)
        self.ns.run_in(self.dhcp.open)
        self.dhcp.start()
        self.echo("network: namespace %s, bridge %s %s, DHCP pool %s-%s" % (
            self.ns.name, netns.BRIDGE, netns.NETWORK, DHCP_POOL[0], DHCP_POOL[-1]))

    def start_site(self):
        Simulation.start_site(self)
        for d in self.site.devices:
            inside = relay_address(d.address)
            self.ns.add_address(inside)
            self.relays.append(netns.UdpRelay(self.ns, inside, 161, d.endpoint))
            if getattr(d, "web", None) is not None:   # its embedded web pages
                for port in (80, 443):
                    self.relays.append(netns.TcpRelay(self.ns, inside, port,
                                                      (d.address, int(self.web_ports.get(port, port)))))

    def start_cloud(self):
        self.ns.run_in(Simulation.start_cloud, self)

    def box_config(self):
        cfg = Simulation.box_config(self)
        if not self.targets:
            cfg["targets"] = sorted({str(ipaddress.ip_network(relay_address(d.address) + "/24", strict=False))
                                     for d in self.site.devices})
        cfg["snmp_port"] = 161       # the relays listen on the standard ports
        # An emulated CPU (TCG) answers its sockets slower than the sim board: give replies more time.
        cfg["timeout_ms"] = max(cfg["timeout_ms"], 3000)
        cfg["web_ports"] = {}
        return cfg

    def flash_box(self):
        cfg_path = os.path.join(self.state, "config.json")
        with open(cfg_path, "w") as f:
            json.dump(self.box_config(), f, indent=1)
        self._run_tool("flash", "--board", BOARD, "--raw", self.flash, "--image", self.image,
                       "--identity", self.identity_path, "--config", cfg_path, "--erase")

    def boot_box(self):
        self._logf = open(os.path.join(self.state, "box.log"), "a")
        self._log_lock = threading.Lock()
        self.hw = Appliance(self.ns, self.flash, self._box_line, self.echo, self.state)
        self.boot_started = time.monotonic()
        self.hw.power_on()
        self.echo("box: booting the QEMU appliance from %s (namespace %s)" % (self.flash, self.ns.name))

    def start(self):
        try:
            self.prepare()
            self.start_network()
            self.start_site()
            self.start_cloud()
            self.flash_box()
            self.boot_box()
        except BaseException:
            self.stop()
            raise
        return self

    def led(self):
        return self.hw.led() if self.hw else None

    def box_address(self):
        st = self.hw.state() if self.hw else None
        return st.get("address") if st else None

    def inject(self, command):
        words = command.split()
        if words and words[0].endswith("-up"):
            return self.ns.run_in(Simulation.inject, self, command)   # the endpoint listens in the namespace
        return Simulation.inject(self, command)

    def stop(self):
        try:
            Simulation.stop(self)
        finally:
            for r in self.relays:
                r.stop()
            self.relays = []
            if self.dhcp:
                self.dhcp.stop()
            self.ns.delete()
