"""The box's real uplink on MicroPython against a hostile cloud (simulator/hostile.py): every
crafted answer is logged and survived, the spool keeps every batch, nothing unauthenticated moves
the box's counter or clock, and once the cloud behaves again everything arrives exactly once."""
import itertools
import json
import os
import subprocess
import time

from simulator.hostile import MODES, HostileCloud
from tests.interop.test_uplink import T0, sample_records
from tests.interop.test_uplink import cloud, kit_dir  # noqa: F401  (pytest fixtures)
from tests.interop.test_uplink_micropython import MICROPYTHON, ROOT

_hosts = itertools.count(1)
YEAR = 365 * 86400
MODES_NOT_GOOD = [m for m in MODES if m != "good"]
# Answers that arrive whole and must be refused by the box's checks (the others break the HTTP layer).
REFUSED_ANSWERS = ("forged", "wrong-types", "max-seq", "far-seq", "replayed", "held-back", "plain-200",
                   "plain-max-seq")


def start_box(state, cfg, identity, clock=False, offset=None):
    os.makedirs(state, exist_ok=True)
    first = {"config": cfg, "identity": identity}
    if clock:
        first["clock_offset_s"] = offset
    p = subprocess.Popen([MICROPYTHON, "-X", "heapsize=1M", os.path.join(ROOT, "tests", "mp_uplink_box.py"), ROOT,
                          state], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdin.write(json.dumps(first) + "\n")
    return p


def drain(p, cycle=None):
    """Put one batch (when cycle is given), drain; the drain's report and the log lines before it."""
    if cycle is not None:
        p.stdin.write(json.dumps({"put": {"scan": "full", "cycle": T0 + cycle * 300,
                                          "records": sample_records(cycle)}}) + "\n")
    p.stdin.write('{"drain": true}\n')
    p.stdin.flush()
    logs = []
    while True:
        line = p.stdout.readline()
        assert line, "the box died: " + p.stderr.read()
        if line.startswith("{"):
            return json.loads(line), logs
        logs.append(line.strip())


def finish(p):
    p.stdin.close()
    assert p.wait(60) == 0, p.stderr.read()


def hostile_cfg(cloud, hostile):  # noqa: F811
    cfg = cloud.raw_cfg(endpoints=("liberty",), resolve={"liberty": (hostile.address, hostile.port)})
    cfg["http_timeout_s"] = 2
    return cfg


def test_micropython_box_survives_every_hostile_answer_and_then_delivers_everything_once(cloud, tmp_path):  # noqa: F811
    hostile = HostileCloud(cloud, "127.77.60.%d" % next(_hosts))
    p = start_box(str(tmp_path / "box"), hostile_cfg(cloud, hostile), cloud.identity)
    try:
        out, _ = drain(p, 0)                    # a genuine answer first: "replayed" sends it again later
        assert out["sent"] == 1 and out["error"] is None, out
        seq0 = out["seq"]
        for n, mode in enumerate(MODES_NOT_GOOD):
            hostile.mode = mode
            out, logs = drain(p, n + 1)
            assert out["sent"] == 0 and out["error"], (mode, out)
            assert len(out["spool"]) == n + 1, (mode, out)                  # every batch kept
            assert out["seq"] < 2 ** 40, (mode, out)                          # never an absurd counter
            assert out["clock"] > 1767225600, (mode, out)                    # the clock never went back
            if mode in REFUSED_ANSWERS:
                assert any(w in x for x in logs for w in ("answer not accepted", "not to", "not believed")), \
                    (mode, out["error"], logs)
        assert out["seq"] - seq0 < 100
        assert out["stats"]["bad_answers"] >= 7
        hostile.mode = "good"
        out, _ = drain(p)
        assert out["error"] is None and out["spool"] == [], out
        finish(p)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        hostile.stop()
    ups = cloud.store.uploads(cloud.serial)
    assert sorted(u["upload"] for u in ups) == list(range(1, len(MODES_NOT_GOOD) + 2))   # each exactly once
    with open(tmp_path / "box" / "uplink.seq") as f:
        assert int(f.read()) < 2 ** 40


def test_micropython_box_a_year_off_learns_the_time_from_the_sealed_refusal(cloud, tmp_path):  # noqa: F811
    lib = cloud.cloud.receivers["liberty"]
    cfg = cloud.raw_cfg(endpoints=("liberty",), resolve={"liberty": (lib.address, lib.port)})
    boxes = {"behind": cloud.add_identity("FBX-BEHIND"), "ahead": cloud.add_identity("FBX-AHEAD")}
    before = [r["reason"] for r in cloud.store.rejects()].count("out-of-window")
    for name, offset in (("behind", -YEAR), ("ahead", YEAR)):
        p = start_box(str(tmp_path / name), cfg, boxes[name], clock=True, offset=offset)
        try:
            out, logs = drain(p, 0)
            finish(p)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert out["sent"] == 1 and out["spool"] == [] and out["error"] is None, out
        assert abs(out["clock"] - time.time()) < 30, out
    assert [r["reason"] for r in cloud.store.rejects()].count("out-of-window") - before == 2
    for ident in boxes.values():
        assert [u["upload"] for u in cloud.store.uploads(ident["serial"])] == [1]


def test_micropython_box_without_a_clock_takes_the_time_only_from_a_sealed_answer(cloud, tmp_path):  # noqa: F811
    hostile = HostileCloud(cloud, "127.77.60.%d" % next(_hosts), mode="plain-200")
    p = start_box(str(tmp_path / "box"), hostile_cfg(cloud, hostile), cloud.identity, clock=True, offset=None)
    try:
        out, _ = drain(p, 0)
        assert out["sent"] == 0 and out["clock"] == 0, out          # a plain answer's time is not believed
        hostile.mode = "good"
        out, _ = drain(p)
        assert out["sent"] == 1 and out["spool"] == [], out
        assert abs(out["clock"] - time.time()) < 30, out             # the acknowledgement's time is
        finish(p)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        hostile.stop()
