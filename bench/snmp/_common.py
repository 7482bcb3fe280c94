"""Helpers for the SNMP benchmarks: agents (snmpsim replaying a recording), the counting
UDP relay, and the MicroPython runner. Loopback only; every process is stopped at exit."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

# a benchmark stopped by SIGTERM (e.g. `timeout`) still runs its `finally:` clean-ups
signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
MICROPYTHON = os.path.join(BIN, "micropython")
WALKS = os.environ.get("FLEETBOX_WALKS") or os.path.join(ROOT, "..", "shared", "printer-walks")
NET_SNMP_ENV = dict(os.environ, MIBS="", MIBDIRS="/nonexistent")


def free_port(host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def _as_nobody(cmd):
    if os.geteuid() == 0:
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + cmd
    return cmd


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Snmpsim:
    """snmpsim-command-responder replaying recordings (community = recording name) on
    one or more (host, port) endpoints."""

    def __init__(self, recordings, endpoints):
        self.tmp = tempfile.mkdtemp(prefix="fb-bench-snmpsim-")
        data, cache = os.path.join(self.tmp, "data"), os.path.join(self.tmp, "cache")
        os.makedirs(data)
        os.makedirs(cache)
        for name in recordings:
            shutil.copy(os.path.join(WALKS, "recordings", name + ".snmprec"), data)
        for d in (self.tmp, data, cache):
            os.chmod(d, 0o777)
        self.endpoints = endpoints
        args = [os.path.join(BIN, "snmpsim-command-responder"), "--data-dir=" + data,
                "--cache-dir=" + cache]
        args += ["--agent-udpv4-endpoint=%s:%d" % e for e in endpoints]
        self.log = os.path.join(self.tmp, "log")
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(_as_nobody(args), stdout=f, stderr=subprocess.STDOUT)
        self.wait(recordings[0])

    def wait(self, community, timeout=60):
        deadline = time.monotonic() + timeout
        for host, port in (self.endpoints[0], self.endpoints[-1]):
            while True:
                r = subprocess.run(["snmpget", "-v2c", "-c", community, "-t", "0.3", "-r", "0",
                                    "%s:%d" % (host, port), "1.3.6.1.2.1.1.2.0"],
                                   capture_output=True, env=NET_SNMP_ENV)
                if r.returncode == 0:
                    break
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    with open(self.log) as f:
                        raise RuntimeError("snmpsim does not answer: " + f.read()[-2000:])
                time.sleep(0.2)

    def close(self):
        stop(self.proc)
        shutil.rmtree(self.tmp, ignore_errors=True)


class Relay:
    """The counting UDP relay (_udpproxy.py) in front of an agent."""

    def __init__(self, target_port, target_host="127.0.0.1"):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "_udpproxy.py"), "127.0.0.1",
                                      str(self.port), target_host, str(target_port)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def counts(self):
        self.proc.terminate()
        out = self.proc.stdout.read()
        self.proc.wait(10)
        return json.loads(out.strip().splitlines()[-1])


def run_micropython(script, stdin, heap="1M"):
    """Run script on MicroPython (its sys.path gets the firmware); return its last stdout line as JSON."""
    fd, path = tempfile.mkstemp(prefix="fb_bench_", suffix=".py")
    with os.fdopen(fd, "w") as f:
        f.write("import sys\nsys.path.insert(0, %r)\n" % os.path.join(ROOT, "firmware") + script)
    try:
        r = subprocess.run([MICROPYTHON, "-X", "heapsize=" + heap, path], input=stdin + "\n",
                           capture_output=True, text=True, timeout=600)
    finally:
        os.unlink(path)
    if r.returncode:
        raise RuntimeError("micropython failed: " + r.stdout[-1000:] + r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]
