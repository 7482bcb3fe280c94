"""The sim board's hardware, as the simulator plays it: power, cable, button, LED, watchdog.

The box (MicroPython running board/sim/rom.py) and this side share a state directory
of small files (board/sim/board.py lists them). Here the "hardware":

- powers the box on (starts the ROM) and off (SIGKILL: a power cut, nothing flushed);
- honours the box's reboot (exit code 75) by starting the ROM again;
- tells the ROM why it (re)started it (the `reset` file, a chip's reset-reason register);
- is the watchdog: started by the box's first feed, it kills and restarts the box
  when the feed counter stops moving for watchdog_s;
- sets the cable (link file), the power source (power file), the data partition's
  health (flash file: writes fail with ENOSPC or EIO) and presses the button
  (events/), and reads back the LED and the box's view of its state.
"""
import json
import os
import signal
import subprocess
import threading
import time

REBOOT_EXIT = 75
POLL_S = 0.1


def _write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


class Hardware:
    def __init__(self, state_dir, command, env, on_line, watchdog_s=60, echo=print):
        self.dir = state_dir
        self.command = command
        self.env = dict(env, FLEETBOX_SIM_DIR=state_dir, FLEETBOX_SIM_WATCHDOG_S=str(watchdog_s))
        self.on_line = on_line
        self.watchdog_s = watchdog_s
        self.echo = echo
        self.proc = None
        self.powered = False
        self.exit = None          # the box's exit code when it stopped by itself (not a reboot)
        self.boots = 0
        self.resets = {"watchdog": 0, "reboot": 0, "power": 0}
        self._events = 0
        self._lock = threading.RLock()
        self._quit = threading.Event()
        self._supervisor = None
        self._feed = None         # (counter text, monotonic time it last changed)
        os.makedirs(os.path.join(state_dir, "events"), exist_ok=True)
        # A new simulation starts with the cable in and the adapter powering the box.
        self.cable(True)
        self.set_power_source("adapter")
        self.flash("ok")

    def _path(self, name):
        return os.path.join(self.dir, name)

    # -- power
    def power_on(self):
        with self._lock:
            if self.powered and self.proc and self.proc.poll() is None:
                return
            self._start("power-on")
            self.powered = True
            if self._supervisor is None:
                self._supervisor = threading.Thread(target=self._supervise, name="sim-hardware", daemon=True)
                self._supervisor.start()

    def power_off(self):
        """Cut the power: the box dies at once, whatever it was doing (a flash write too)."""
        with self._lock:
            self.powered = False
            self._kill(signal.SIGKILL)

    def power_cut(self, off_s=1.0):
        self.power_off()
        self.resets["power"] += 1
        self.echo("hardware: power cut for %.1f s" % off_s)
        time.sleep(off_s)
        self.power_on()

    def shutdown(self):
        self._quit.set()
        with self._lock:
            self.powered = False
            self._kill(signal.SIGTERM, grace=5)

    def _start(self, cause):
        # The reset-reason register: the ROM reads it to tell a power loss from a crash.
        _write_atomic(self._path("reset"), cause)
        for name in ("watchdog", "led", "state.json"):
            try:
                os.remove(self._path(name))
            except OSError:
                pass
        for name in os.listdir(self._path("events")):
            os.remove(os.path.join(self._path("events"), name))
        self._feed = None
        self.exit = None
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=self.env, start_new_session=True)
        self.boots += 1
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _kill(self, sig, grace=0):
        p = self.proc
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace or 10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def _read(self, proc):
        for line in proc.stdout:
            self.on_line(line.rstrip())

    # -- the supervisor: reboot and watchdog
    def _supervise(self):
        while not self._quit.wait(POLL_S):
            with self._lock:
                if not self.powered or self.proc is None:
                    continue
                code = self.proc.poll()
                if code == REBOOT_EXIT:
                    self.resets["reboot"] += 1
                    self.echo("hardware: the box rebooted itself")
                    self._start("software")
                elif code is not None:
                    if self.exit is None:
                        self.exit = code
                        self.echo("hardware: the box stopped (exit %d)" % code)
                else:
                    self._check_watchdog()

    def _check_watchdog(self):
        now = time.monotonic()
        fed = _read(self._path("watchdog"))
        if fed is None:
            return                      # not started yet
        if self._feed is None or fed != self._feed[0]:
            self._feed = (fed, now)
        elif now - self._feed[1] > self.watchdog_s:
            self.resets["watchdog"] += 1
            self.echo("hardware: watchdog expired (%.0f s without a feed): resetting the box" % self.watchdog_s)
            self._kill(signal.SIGKILL)
            self._start("watchdog")

    def running(self):
        return self.powered and self.proc is not None and self.proc.poll() is None

    # -- inputs
    def cable(self, plugged):
        _write_atomic(self._path("link"), "up" if plugged else "down")

    def flash(self, mode):
        """"ok", or how every write to the data partition fails from now on: "enospc" (full), "eio"."""
        if mode not in ("ok", "enospc", "eio"):
            raise ValueError("flash is 'ok', 'enospc' or 'eio', not %r" % mode)
        _write_atomic(self._path("flash"), mode)

    def set_power_source(self, source):
        if source not in ("poe", "adapter"):
            raise ValueError("power source is 'poe' or 'adapter', not %r" % source)
        _write_atomic(self._path("power"), source)

    def _event(self, line):
        self._events += 1
        name = "%012d" % self._events
        tmp = os.path.join(self.dir, "event.tmp")
        with open(tmp, "w") as f:
            f.write(line + "\n")
        os.replace(tmp, os.path.join(self._path("events"), name))

    def button(self, held_ms=200):
        self._event("button %d" % int(held_ms))

    def hang(self):
        """Make the box's firmware hang in a loop that never yields (for the watchdog)."""
        self._event("hang")

    # -- outputs
    def led(self):
        return _read(self._path("led"))

    def state(self):
        """The box's own view: led, link, power, address, mac, slot, time (None before it booted)."""
        text = _read(self._path("state.json"))
        try:
            return json.loads(text) if text else None
        except ValueError:
            return None
