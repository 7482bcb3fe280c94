"""The recorded devices' agent: ONE snmpsim subprocess serving every recording, one
SNMP engine per device (own data dir, own endpoint), so each answers its own community
with its own file. A separate process because snmpsim owns its event loop and refuses
to run as root; its watchdog ends it if this Python dies without stopping it."""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from simulator.unprivileged import python_for_nobody

# snmpsim's own main(), plus a watchdog: if the parent (this Python) dies, exit too.
_SNMPSIM_BOOT = r"""
import os, shutil, sys, threading, time
_parent = int(sys.argv.pop(1))
_tmp = sys.argv.pop(1)
def _watch():
    while True:
        time.sleep(0.5)
        if os.getppid() != _parent:
            shutil.rmtree(_tmp, ignore_errors=True)
            os._exit(0)
threading.Thread(target=_watch, daemon=True).start()
from snmpsim.commands.responder import main
sys.argv[0] = "snmpsim-command-responder"
sys.exit(main())
"""


def _unprivileged_port_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text().strip())
    except (OSError, ValueError):
        return 1024


def _nobody() -> tuple[str, str] | None:
    try:
        user = pwd.getpwnam("nobody").pw_name
    except KeyError:
        return None
    for g in ("nogroup", "nobody"):
        try:
            return user, grp.getgrnam(g).gr_name
        except KeyError:
            continue
    return None


def _root_privileges(devices, cache: Path, args: list, env: dict) -> str:
    """snmpsim refuses to run as root. Its --process-user drops privileges *before*
    asyncio actually binds the sockets, so that only works for ports a non-root user may
    bind, and only if that user can read this Python installation; otherwise it is let
    run as root. Nobody runs a copy of this Python when it cannot read this one
    (simulator.unprivileged). Extends args / env accordingly; returns how it runs."""
    ports_ok = min(d.port for d in devices) >= _unprivileged_port_start()
    nobody = _nobody()
    runtime_ok = True
    if ports_ok and nobody:
        # a Python nobody can run: a copy when this one sits under a 0700 directory
        try:
            python, extra = python_for_nobody()
        except OSError:
            runtime_ok = False
    if ports_ok and runtime_ok and nobody:
        args[0] = python
        env.update(extra)
        user, group = nobody
        os.chown(cache, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
        args += [f"--process-user={user}", f"--process-group={group}"]
        return f"dropped to {user}:{group}"
    env["SNMPSIM_ALLOW_ROOT"] = "true"
    why = []
    if not ports_ok:
        why.append(f"ports below {_unprivileged_port_start()} need root to bind")
    if not runtime_ok:
        why.append("no Python unprivileged users can run")
    if not nobody:
        why.append("no nobody user")
    return "root (" + "; ".join(why) + ")"


class Snmpsim:
    """ONE snmpsim process serving every recorded device: one SNMP engine per device
    (own data dir, own endpoint), so each answers its own community with its own file."""

    def __init__(self, devices: list):
        self.devices = devices
        self.proc: subprocess.Popen | None = None
        self.tmp: Path | None = None
        self.log_path: Path | None = None
        self.privileges = ""

    def start(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fleetbox-site-snmpsim-"))
        os.chmod(self.tmp, 0o755)
        data = self.tmp / "data"
        cache = self.tmp / "cache"
        data.mkdir(mode=0o755)
        cache.mkdir(mode=0o755)
        self.log_path = self.tmp / "snmpsim.log"
        args = [sys.executable, "-c", _SNMPSIM_BOOT, str(os.getpid()), str(self.tmp),
                f"--cache-dir={cache}"]
        for i, dev in enumerate(self.devices):
            d = data / f"{i:02d}-{dev.name}"
            d.mkdir(mode=0o755)
            target = d / f"{dev.community}.snmprec"
            shutil.copyfile(dev.served_recording(), target)   # a copy: snmpsim mis-handles symlinks
            os.chmod(target, 0o644)
            # one engine per device ("auto" ID: a fixed one makes pysnmp write /tmp/__pysnmp)
            args += ["--v3-engine-id=auto", f"--data-dir={d}",
                     f"--agent-udpv4-endpoint={dev.address}:{dev.port}"]
        env = dict(os.environ)
        env.pop("SNMPSIM_ALLOW_ROOT", None)
        if os.geteuid() == 0:
            self.privileges = _root_privileges(self.devices, cache, args, env)
        else:
            self.privileges = f"uid {os.geteuid()}"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True, cwd=str(self.tmp))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except (OSError, AttributeError):
            return ""
        return "\n".join(lines[-n:])

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is not None:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    # the group may hold stragglers even when the leader is gone
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
