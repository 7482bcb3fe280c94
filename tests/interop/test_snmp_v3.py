"""SNMPv3 interop (and v1/v2c against pysnmp's agent): the firmware client (CPython and
MicroPython) against real USM agents.

Agents: pysnmp (tests/pysnmp_v3_agent.py: one user per auth x priv combination, plus a
named context), net-snmp's snmpd (users from createUser lines), and snmpsim (a v3 user,
the recording chosen by context name, as a printer answers in a named context), the
last one through `fbtool scan --v3 ... --context`. The reference reading of each agent
is net-snmp's snmpbulkwalk over v2c: every v3 reading must equal it.
"""
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.interop.test_snmp_interop import (NET_SNMP_ENV, ROOT, SNMPSIM, WALKS, _as_nobody, _free_port, _nobody_env,
                                             _stop, _wait_answering, net_snmp_walk, run_cpython, run_micropython)
from pysnmp_v3_agent import USERS
from fleetbox import snmp

SYSTEM = "1.3.6.1.2.1.1"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
KW = {"timeout_ms": 1500, "retries": 1, "window": 32}


def _stable(rows):  # sysUpTime moves on between readings
    return [r for r in rows if r[0] != SYS_UPTIME]


@contextlib.contextmanager
def _agent(what, community, argv, env=None):
    """An agent process answering `community` on a free loopback port, stopped and removed after.
    argv(port, tmp, log): its command (tmp: its scratch directory; log: a file for its own log,
    where its output goes too); env(tmp): its environment (default: this one)."""
    tmp = tempfile.mkdtemp(prefix="fb-v3-agent-")
    try:
        port = _free_port()
        log = os.path.join(tmp, "agent.log")
        cmd = argv(port, tmp, log)
        with open(log, "a") as logf:
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env(tmp) if env else None,
                                    cwd=tmp)
        try:
            _wait_answering(port, community, proc, what, log)
            yield port
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def pysnmp_agent():
    with _agent("pysnmp agent", "public", lambda port, tmp, log: [
            sys.executable, os.path.join(ROOT, "tests", "pysnmp_v3_agent.py"), "127.0.0.1", str(port)]) as port:
        yield port


def _v3(user, context=""):
    return [user[0], user[1], user[2], user[3], user[4], context]


def _jobs(port, users, context=""):
    jobs = []
    for u in users:
        kw = {"port": port, "v3": _v3(u, context)}
        jobs.append(["get", ["127.0.0.1", [SYSTEM + ".1.0", SYSTEM + ".5.0", SYSTEM + ".99.0"]], kw])
        jobs.append(["walk", ["127.0.0.1", SYSTEM], dict(kw, max_repetitions=5)])
    return jobs


def _check(out, users, ref):
    stats = out.pop()
    assert len(out) == 2 * len(users)
    for i, u in enumerate(users):
        get, walk = out[2 * i], out[2 * i + 1]
        assert get[:2] == [r for r in ref if r[0] in (SYSTEM + ".1.0", SYSTEM + ".5.0")], u[0]
        assert get[2][1:] == ["x", "noSuchObject"], u[0]
        assert _stable(walk) == _stable(ref), u[0]
    assert stats["timeouts"] == 0 and stats["auth_failures"] == 0 and stats["dropped"] == 0
    assert stats["discoveries"] == 1
    return stats


def test_pysnmp_every_auth_priv_combination_cpython(pysnmp_agent):
    """All 6 auth x (none, AES, AES192, AES256, and Cisco's AES192C/AES256C) + noAuthNoPriv."""
    ref = net_snmp_walk(pysnmp_agent, "public", SYSTEM)
    assert len(ref) > 5
    assert len(USERS) == 37
    _check(run_cpython(_jobs(pysnmp_agent, USERS), KW), USERS, ref)


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_pysnmp_agent_v1_and_v2c(pysnmp_agent, runtime):
    ref = net_snmp_walk(pysnmp_agent, "public", SYSTEM)
    ref1 = net_snmp_walk(pysnmp_agent, "public", SYSTEM, version="1")
    jobs = [["walk", ["127.0.0.1", SYSTEM], {"port": pysnmp_agent, "community": "public", "version": v}]
            for v in ("1", "2c")]
    jobs += [["get", ["127.0.0.1", [SYSTEM + ".1.0", SYSTEM + ".99.0"]],
              {"port": pysnmp_agent, "community": "public", "version": v}] for v in ("1", "2c")]
    out = run_cpython(jobs, KW) if runtime == "cpython" else run_micropython(jobs, client_kw=KW)
    stats = out.pop()
    assert _stable(out[0]) == _stable(ref1) and _stable(out[1]) == _stable(ref) and len(ref) > 5
    assert out[2][0] == out[3][0] == [r for r in ref if r[0] == SYSTEM + ".1.0"][0]
    assert out[2][1][1:] == out[3][1][1:] == ["x", "noSuchObject"]
    assert stats["timeouts"] == 0 and stats["dropped"] == 0


MP_USERS = ["noauth", "md5-aes", "sha-aes192", "sha256-aes256", "sha224-aes256c", "sha512-none"]


def test_pysnmp_v3_on_micropython(pysnmp_agent):
    """A representative set on MicroPython, incl. its pure-Python AES-192 and SHA-224/512."""
    users = [u for u in USERS if u[0] in MP_USERS]
    ref = net_snmp_walk(pysnmp_agent, "public", SYSTEM)
    _check(run_micropython(_jobs(pysnmp_agent, users), client_kw=KW), users, ref)


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_pysnmp_named_context(pysnmp_agent, runtime):
    users = [u for u in USERS if u[0] in ("sha-aes", "md5-none")]
    ref = net_snmp_walk(pysnmp_agent, "public", SYSTEM)
    run = run_cpython if runtime == "cpython" else run_micropython
    out = run(_jobs(pysnmp_agent, users, "MFP"), KW) if runtime == "cpython" else \
        run(_jobs(pysnmp_agent, users, "MFP"), client_kw=KW)
    _check(out, users, ref)


def test_pysnmp_wrong_secrets_are_named(pysnmp_agent):
    sha = [u for u in USERS if u[0] == "sha-aes"][0]
    jobs = [["get", ["127.0.0.1", [SYSTEM + ".5.0"]],
             {"port": pysnmp_agent, "v3": ["sha-aes", "SHA", "not-the-password", "AES", sha[4], ""]}],
            ["get", ["127.0.0.1", [SYSTEM + ".5.0"]],
             {"port": pysnmp_agent, "v3": ["nobody-here", "SHA", "whatever-pass", None, None, ""]}],
            ["get", ["127.0.0.1", [SYSTEM + ".5.0"]],  # a DES user, asked with AES
             {"port": pysnmp_agent, "v3": ["sha-des", "SHA", "auth-sha-pass", "AES", "priv-des-pass", ""]}]]
    out = run_cpython(jobs, KW)
    out.pop()
    assert out == [{"error": "wrongDigests"}, {"error": "unknownUserNames"}, {"error": "decryptionErrors"}]

    async def des():
        c = snmp.Client(**KW)
        try:
            await c.get("127.0.0.1", [SYSTEM + ".5.0"], port=pysnmp_agent,
                        cred=snmp.Credential.v3("sha-des", "SHA", "auth-sha-pass", "AES", "priv-des-pass"))
        except snmp.SnmpError as e:
            return str(e)
        finally:
            c.close()
    msg = asyncio.run(des())
    assert "127.0.0.1:%d" % pysnmp_agent in msg and "DES" in msg and "sha-des" in msg


# ------------------------------------------------------------------ net-snmp snmpd

SNMPD_USERS = [
    ("sha-aes", "SHA", "sha-auth-pass", "AES", "sha-priv-pass"),
    ("md5-aes256", "MD5", "md5-auth-pass", "AES256", "md5-priv-pass"),
    ("sha-aes192", "SHA", "sha-auth-pass", "AES192", "sha-priv-pass"),
    ("sha512-aes256", "SHA512", "s512-auth-pass", "AES256", "s512-priv-pass"),
    ("sha224-none", "SHA224", "s224-auth-pass", None, None),
    ("noauth", None, None, None, None),
]
_NET_SNMP_NAMES = {"SHA224": "SHA-224", "SHA512": "SHA-512", "AES256": "AES-256", "AES192": "AES-192"}


@pytest.fixture(scope="module")
def snmpd_v3():
    def argv(port, tmp, log):
        os.chmod(tmp, 0o777)
        conf = os.path.join(tmp, "snmpd.conf")
        with open(conf, "w") as f:
            for name, a, ap, p, pp in SNMPD_USERS:
                f.write(" ".join(["createUser", name] + [_NET_SNMP_NAMES.get(x, x) for x in (a, ap, p, pp) if x])
                        + "\n")
                f.write("rouser %s %s\n" % (name, "priv" if p else ("auth" if a else "noauth")))
            f.write("rocommunity public 127.0.0.1\nsysLocation fleetbox-v3-lab\n")
        cmd = ["snmpd", "-f", "-Lf", log + ".snmpd", "-C", "-c", conf, "-p", os.path.join(tmp, "pid"),
               "udp:127.0.0.1:%d" % port]
        if os.geteuid() == 0:
            cmd[1:1] = ["-u", "nobody", "-g", "nogroup"]
        return cmd
    with _agent("snmpd", "public", argv, lambda tmp: dict(NET_SNMP_ENV, SNMP_PERSISTENT_DIR=tmp)) as port:
        yield port


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_snmpd_v3_users(snmpd_v3, runtime):
    ref = net_snmp_walk(snmpd_v3, "public", SYSTEM)
    assert any(r[2] == b"fleetbox-v3-lab".hex() for r in ref)
    users = SNMPD_USERS if runtime == "cpython" else [u for u in SNMPD_USERS if u[0] != "sha512-aes256"]
    jobs = _jobs(snmpd_v3, users)
    out = run_cpython(jobs, KW) if runtime == "cpython" else run_micropython(jobs, client_kw=KW)
    # snmpd answers a GET for sysName etc. exactly as its v2c walk does
    _check(out, users, ref)


# ------------------------------------------- replies over the box's receive buffer

@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_v3_replies_over_the_receive_buffer_ask_for_fewer_rows(pysnmp_agent, snmpd_v3, runtime):
    """A 700-byte receive buffer and GETBULKs of 40 rows, encrypted: each agent's first reply
    outgrows the buffer. Asked with msgMaxSize = the buffer, pysnmp dropped such replies (a
    timeout) and snmpd answered genErr; now both send them, and the client reads one cut short
    as tooBig and walks on in smaller pages, exactly as over v2c."""
    kw = dict(KW, bufsize=700)
    pysnmp_user = [u for u in USERS if u[0] == "sha-aes"][0]
    for port, user in ((pysnmp_agent, pysnmp_user), (snmpd_v3, SNMPD_USERS[0])):
        ref = net_snmp_walk(port, "public", SYSTEM)
        assert len(ref) > 5
        for how in ({"v3": _v3(user)}, {"community": "public"}):
            jobs = [["walk", ["127.0.0.1", SYSTEM], dict(how, port=port, max_repetitions=40)]]
            out = run_cpython(jobs, kw) if runtime == "cpython" else run_micropython(jobs, client_kw=kw)
            stats = out.pop()
            assert _stable(out[0]) == _stable(ref), (port, how, out)
            assert stats["truncated"] >= 1 and stats["timeouts"] == 0 and stats["dropped"] == 0, (port, how, stats)


# ------------------------------------------------------------ snmpsim + fbtool scan

def _fbtool(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "fbtool")
    return subprocess.run([exe] + list(args), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def snmpsim_v3():
    """snmpsim serving the brother recording to a SHA-256/AES-256 user in context "brother"."""
    def argv(port, tmp, log):
        data, cache = os.path.join(tmp, "data"), os.path.join(tmp, "cache")
        os.makedirs(data)
        os.makedirs(cache)
        shutil.copy(os.path.join(WALKS, "recordings", "brother.snmprec"), data)
        for d in (tmp, data, cache):
            os.chmod(d, 0o777)
        return _as_nobody(SNMPSIM + ["--data-dir=" + data, "--cache-dir=" + cache,
                                    "--v3-user=printer-admin", "--v3-auth-proto=SHA256",
                                    "--v3-auth-key=fleet-auth-key", "--v3-priv-proto=AES256BLMT",
                                    "--v3-priv-key=fleet-priv-key", "--agent-udpv4-endpoint=127.0.0.1:%d" % port])
    with _agent("snmpsim", "brother", argv, lambda tmp: _nobody_env()) as port:
        yield port


def test_fbtool_scan_v3_with_context(snmpsim_v3):
    spec = "printer-admin:SHA256:fleet-auth-key:AES256:fleet-priv-key"
    r = _fbtool("scan", "127.0.0.1:%d" % snmpsim_v3, "--v3", spec, "--context", "brother",
                "--timeout-ms", "1500", "--json")
    assert r.returncode == 0, r.stderr
    recs = json.loads(r.stdout)
    assert len(recs) == 1 and recs[0]["snmp_version"] == "3"
    ref = _fbtool("scan", "127.0.0.1:%d" % snmpsim_v3, "--community", "brother", "--json")
    assert ref.returncode == 0, ref.stderr
    v2 = json.loads(ref.stdout)[0]
    assert v2["model"] and v2["supplies"] and v2["snmp_version"] == "2c"
    for rec in (recs[0], v2):  # what differs between two readings of the same device
        for k in ("collected_at", "first_seen", "snmp_version", "uptime_s"):
            rec.pop(k, None)
    assert recs[0] == v2
    # wrong context: the agent has no such recording, so nothing is found
    r = _fbtool("scan", "127.0.0.1:%d" % snmpsim_v3, "--v3", spec, "--context", "nope",
                "--timeout-ms", "300", "--retries", "0", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == []


@pytest.mark.parametrize("args,msg", [
    (["--v3", "u:SHA"], "fields"),
    (["--v3", "u:SHA1024:authpass1"], "SHA1024"),
    (["--v3", "u:SHA:authpass1:DES:privpass1"], "DES"),
    (["--v3", "u:SHA:authpass1:AES128X:privpass1"], "AES128X"),
    (["--v3", "u:MD5:short"], "8 characters"),
    (["--v3", ":MD5:authpass1"], "USER"),
    (["--snmp-version", "3"], "needs --v3"),
    (["--snmp-version", "2c", "--v3", "u"], "--snmp-version 3"),
    (["--context", "MFP"], "--v3"),
])
def test_fbtool_scan_rejects_bad_v3_options(args, msg):
    r = _fbtool("scan", "127.0.0.1:9", *args)
    assert r.returncode != 0 and msg in r.stderr, r.stderr


def test_sweep_finds_a_v3_only_printer_among_silent_addresses(snmpsim_v3):
    """Credentials [v2c public, v3 user]: the printer answers only SNMPv3 (snmpsim ignores the
    unknown community). Discovery's engine probe finds it in the same sweep; the v3 user
    is tried on it alone, not on the silent addresses (a v3 attempt costs a timeout each)."""
    from fleetbox.sweep import SweepOptions, sweep
    creds = [snmp.Credential.v2c(b"public"),
             snmp.Credential.v3("printer-admin", "SHA256", "fleet-auth-key", "AES256", "fleet-priv-key",
                                context=b"brother")]
    targets = [("127.0.0.1", snmpsim_v3)] + [("127.0.0.%d" % i, snmpsim_v3) for i in range(2, 10)]

    async def main():
        client = snmp.Client(timeout_ms=300, retries=1)
        found, stats = [], {}
        try:
            probed, n = await sweep(client, iter(targets), found.append,
                                    SweepOptions(scan="full", creds=creds, stats=stats))
        finally:
            client.close()
        return probed, n, found, stats, client.stats

    probed, n, found, stats, cstats = asyncio.run(main())
    assert (probed, n) == (9, 1)
    assert found[0]["ip"] == "127.0.0.1" and found[0]["snmp_version"] == "3" and found[0]["supplies"]
    assert stats["answered"] == 1 and stats["silent"] == 8
    assert cstats["discoveries"] == 1     # only the device that answered the engine probe
