"""The uplink on the real runtime (MicroPython 1.29, mbedtls): keep-alive over its `tls`, pins,
and impostors, against the real cloud over HTTPS on loopback."""
import json
import os
import subprocess
import sys

from tests.interop.test_uplink import T0, _hosts, _impostor, same, sample_records, stored
from tests.interop.test_uplink import cloud, kit_dir  # noqa: F401  (pytest fixtures)
from tests.uplink_kit import Relay

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")


def run_box(state, cfg, identity, commands, timeout=120):
    """Feed commands to tests/mp_uplink_box.py; returns the replies of its drains."""
    os.makedirs(state, exist_ok=True)
    lines = [json.dumps({"config": cfg, "identity": identity})] + [json.dumps(c) for c in commands]
    r = subprocess.run([MICROPYTHON, "-X", "heapsize=1M", os.path.join(ROOT, "tests", "mp_uplink_box.py"), ROOT, state],
                       input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def batch(cycle):
    return {"put": {"scan": "full", "cycle": T0 + cycle * 300, "records": sample_records(cycle)}}


def test_micropython_box_keeps_one_tls_session_for_a_drain(cloud, tmp_path):
    lib = cloud.cloud.receivers["liberty"]
    relay = Relay("127.77.9.%d" % next(_hosts), (lib.address, lib.port))
    try:
        cfg = cloud.raw_cfg(endpoints=("liberty", "rescue"), resolve={"liberty": (relay.address, relay.port)})
        out = run_box(str(tmp_path / "box"), cfg, cloud.identity,
                      [batch(0), batch(1), batch(2), {"drain": True}, batch(3), {"drain": True}])
        assert [o["sent"] for o in out] == [3, 1] and out[-1]["spool"] == []
        assert out[-1]["stats"]["handshakes"] == 2 and relay.count["connections"] == 2   # one per drain
        assert same(stored(cloud), {r["serial"]: r for r in sample_records(3)})
    finally:
        relay.stop()


def test_micropython_box_refuses_impostors_and_keeps_its_data(cloud, tmp_path):
    for own_ca in (True, False):
        mitm = _impostor(tmp_path, cloud, own_ca)
        try:
            cfg = cloud.raw_cfg(endpoints=("liberty",), resolve={"liberty": (mitm.address, mitm.port)})
            out = run_box(str(tmp_path / ("box%d" % own_ca)), cfg, cloud.identity, [batch(0), {"drain": True}])
            assert out[0]["sent"] == 0 and len(out[0]["spool"]) == 1, out
            assert ("matches no pin" in out[0]["error"]) == (not own_ca), out[0]["error"]
            assert mitm.received == []
        finally:
            mitm.stop()
    assert cloud.store.uploads(cloud.serial) == []


def test_micropython_box_cloud_down_for_many_cycles_and_reboots_then_every_record_once(cloud, tmp_path):
    state = str(tmp_path / "box")
    cfg = cloud.raw_cfg()
    assert run_box(state, cfg, cloud.identity, [batch(0), {"drain": True}])[0]["sent"] == 1
    for r in cloud.cloud.receivers.values():
        r.stop()
    for cycle in range(1, 7):   # each cycle a new box process: a reboot with the cloud unreachable
        out = run_box(state, cfg, cloud.identity, [batch(cycle), {"drain": True}])
        assert out[0]["sent"] == 0 and len(out[0]["spool"]) == cycle and "rescue" in out[0]["error"]
    for r in cloud.cloud.receivers.values():
        r.start()
    out = run_box(state, cfg, cloud.identity, [{"drain": True}])
    assert out[0]["sent"] == 6 and out[0]["spool"] == []
    assert [u["upload"] for u in cloud.store.uploads(cloud.serial)] == list(range(1, 8))
    for i in range(8):
        hist = cloud.store.history(cloud.serial, "SN-%04d" % i)
        assert same(list(reversed(hist)), [sample_records(c)[i] for c in range(7)])


def test_micropython_box_through_an_http_proxy(cloud, tmp_path):
    proxy, cfg, target = cloud.through_proxy("127.77.8.%d" % next(_hosts))
    try:
        out = run_box(str(tmp_path / "box"), cfg, cloud.identity, [batch(0), batch(1), {"drain": True}])
        assert out[0]["sent"] == 2 and proxy.tunnels == [target]
        cfg["proxy"]["password"] = "wrong"
        out = run_box(str(tmp_path / "box"), cfg, cloud.identity, [batch(2), {"drain": True}])
        assert out[0]["sent"] == 0 and "407" in out[0]["error"] and len(out[0]["spool"]) == 1
    finally:
        proxy.stop()


def test_micropython_box_keeps_its_loop_running_while_the_cloud_stalls(cloud, tmp_path):
    """A server that accepts TCP and then says nothing: the upload times out, and meanwhile
    the box's other tasks (the health task feeding the watchdog) keep running."""
    import socket
    silent = socket.socket()
    silent.bind(("127.77.10.%d" % next(_hosts), 0))
    silent.listen(8)
    try:
        cfg = cloud.raw_cfg(endpoints=("liberty",), resolve={"liberty": silent.getsockname()}, http_timeout_s=1)
        out = run_box(str(tmp_path / "box"), cfg, cloud.identity, [batch(0), {"drain": True}])
        assert out[0]["sent"] == 0 and "within 1 s" in out[0]["error"] and len(out[0]["spool"]) == 1
        assert out[0]["ticks"] >= 10      # two 1 s attempts: the loop ran throughout
    finally:
        silent.close()
