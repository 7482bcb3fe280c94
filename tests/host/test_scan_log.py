"""`fbtool scan`: only the result by default, the box's log with -v; a v3 password never
shows in that log. Against pysnmp's agent (tests/pysnmp_v3_agent.py) on loopback."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FBTOOL = os.path.join(os.path.dirname(sys.executable), "fbtool")
AUTH_PASS = "wrong-auth-pass-4u"
PRIV_PASS = "wrong-priv-pass-7q"


def _free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def agent():
    port = _free_udp_port()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "pysnmp_v3_agent.py"), "127.0.0.1",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        line = ""
        while time.time() < deadline and line.strip() != "ready":
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail("pysnmp agent exited %s" % proc.returncode)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _scan(port, *extra):
    # a known user (tests/pysnmp_v3_agent.py) with the wrong passwords: the agent refuses it
    return subprocess.run([FBTOOL, "scan", "127.0.0.1:%d" % port, "--json", "--timeout-ms", "1000",
                           "--retries", "0", "--v3", "sha-aes:SHA:%s:AES:%s" % (AUTH_PASS, PRIV_PASS)]
                          + list(extra), capture_output=True, text=True, timeout=120)


def test_quiet_by_default_verbose_shows_the_box_log_without_secrets(agent):
    quiet = _scan(agent)
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout) == [] and quiet.stderr == ""
    loud = _scan(agent, "-vv")
    assert loud.returncode == 0, loud.stderr
    assert json.loads(loud.stdout) == []
    assert "refused SNMPv3 user 'sha-aes'" in loud.stderr, loud.stderr
    for s in (AUTH_PASS, PRIV_PASS):
        assert s not in loud.stderr + loud.stdout
