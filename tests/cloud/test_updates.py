"""The update service (cloud/updates.py) with the box's own code on CPython over real HTTPS on
loopback: publish -> rollout -> offer in the sealed upload answer -> Range download and install
(fleetbox.updater) -> authenticated reports -> status; percentage rollouts; the automatic halt."""
import asyncio
import itertools
import json
import os
import time

import pytest

from cloud import accounts, audit, tenancy, updates
from fleetbox import https, updagent, updater, updimage, uplink
from fleetbox.spool import Spool
from firmware.test_updater import DirSlot
from simulator import pki
from tests import update_kit as uk
from tests.interop.test_uplink import box, put_cycle
from tests.uplink_kit import Kit

_hosts = itertools.count(10)
KEY = bytes(range(200, 232))
NOW = 1796000000 + 86400


@pytest.fixture
def kit(tmp_path, database):
    d = tmp_path / "cloud"
    d.mkdir()
    h = next(_hosts)
    k = Kit(str(d), ("127.77.50.%d" % h, 0), ("127.77.51.%d" % h, 0), database=database).start()
    with k.store.engine.begin() as c:       # operators: the key-owning dealer's manager; another dealer's
        k.dealer = tenancy.add_dealer(c, "Operator", owns_keys=True)
        k.site = tenancy.add_site(c, tenancy.add_customer(c, k.dealer, "C"), "S")
        tenancy.assign_box(c, k.serial, k.site)
        k.tokens = {role: accounts.issue(c, accounts.add_user(c, dealer, "%s@%d.example" % (role, dealer),
                                                              "password-for-tests", role), "token")
                    for dealer, role in ((k.dealer, "manager"), (k.dealer, "technician"),
                                         (tenancy.add_dealer(c, "Other"), "administrator"))}
    yield k
    k.stop()


def _call(kit, method, path, body=b"", headers=None, role="manager"):
    if path != "/v1/updates/report" and not path.startswith("/v1/updates/images/") and role:
        headers = dict(headers or {}, Authorization="Bearer " + kit.tokens[role])
    url = "https://liberty.fleetbox.test:%d%s" % (kit.cloud.receivers["liberty"].port, path)
    rec = kit.cloud.receivers["liberty"]
    return https.request(method, url, body, pki.der(kit.ca[1]), [bytes.fromhex(pki.spki_pin(rec.cert))], rec.address,
                         headers=headers)


def _publish(kit, version="2.0.0", **manifest):
    data, _ = uk.signed(uk.fbi(20000, version=version), chunk_size=1024, content_key=KEY, **manifest)
    status, reply = _call(kit, "POST", "/v1/updates/images", data, {"X-Content-Key": KEY.hex()})
    assert status == 201, reply
    return json.loads(reply)["image"], data


def _rollout(kit, **spec):
    status, reply = _call(kit, "POST", "/v1/updates/rollouts", json.dumps(spec).encode())
    assert status == 201, reply
    return json.loads(reply)["rollout"]


def _status(kit, rid):
    status, reply = _call(kit, "GET", "/v1/updates/rollouts/%d" % rid)
    assert status == 200
    return json.loads(reply)


class Board:
    slot = "slot_a"
    name = "sim"

    def __init__(self, data_dir):
        self.data_dir = data_dir

    def feed_watchdog(self):
        pass


class Agent(updagent.Agent):
    """The box's agent with a directory for the other slot (CPython has no vfs) and the test root."""

    def _installer(self):
        root = updimage.load_root(open(os.path.join(uk.VECTORS, "root-1.fbr"), "rb").read())
        return updater.Installer(root, self.identity, DirSlot(self.state_dir + "/slot_b"), self.state_dir, "sim",
                                 self.version, 0, 1, self._floor(), stage=self._stage_here)

    def _stage_here(self, name, info):
        self._write_staged(name, 0)       # the agent's record of the staged rollout, as _stage writes it
        self.staged.append(info)


def _box(kit, tmp_path, name="box"):
    spool, up = box(kit, tmp_path / name)
    agent = Agent(Board(str(tmp_path / name / "box")), kit.identity, up, "1.0.0")
    agent.staged = []
    return spool, up, agent


def _upload(spool, up, cycle=0):
    put_cycle(spool, cycle, n=1)
    asyncio.run(up.drain(spool))


def test_publish_offer_install_report(kit, tmp_path):
    digest, data = _publish(kit)
    status, reply = _call(kit, "GET", "/v1/updates/images/" + digest, headers={"Range": "bytes=0-15"})
    assert status == 206 and reply == data[:16]
    rid = _rollout(kit, image=digest, boxes=[kit.serial])
    spool, up, agent = _box(kit, tmp_path)
    assert not agent.due()
    _upload(spool, up)
    assert agent.due() and agent.offer["rollout"] == rid and agent.offer["version"] == "2.0.0"
    assert [p["state"] for p in _status(kit, rid)["progress"]] == ["offered"]
    assert agent.run() is True
    assert agent.staged and agent.staged[0]["version"] == "2.0.0"
    st = _status(kit, rid)
    assert st["counts"] == {"staged": 1} and st["state"] == "active"
    _upload(spool, up, 1)
    assert not agent.due()                      # no offer once staged
    agent.board.slot = "slot_b"                 # the reboot: the trial runs and confirms
    agent.after_cycle(False)
    assert _status(kit, rid)["counts"] == {"confirmed": 1}
    with kit.store.engine.connect() as c:      # the dashboard shows what the box runs now
        assert tenancy.box_places(c, [kit.serial])[kit.serial]["firmware"] == "2.0.0"
        assert [(e["actor"], e["action"]) for e in audit.entries(c, kit.dealer)][:2] == [
            ("manager@%d.example" % kit.dealer, "rollout"), ("manager@%d.example" % kit.dealer, "rollout.publish")]


def test_operator_routes_want_a_user_who_may_roll_out_the_fleet(kit):
    digest, _ = _publish(kit)
    spec = json.dumps({"image": digest, "all": True}).encode()
    assert _call(kit, "POST", "/v1/updates/rollouts", spec, role=None)[0] == 401
    assert _call(kit, "POST", "/v1/updates/rollouts", spec, role="technician")[0] == 403
    assert _call(kit, "POST", "/v1/updates/rollouts", spec, role="administrator")[0] == 403   # not the fleet's dealer
    assert _call(kit, "GET", "/v1/updates/rollouts", role="administrator")[0] == 403
    assert _call(kit, "GET", "/v1/updates/rollouts")[1] == b"[]"


def test_a_report_needs_the_box_key_and_a_fresh_seq(kit, tmp_path):
    digest, _ = _publish(kit)
    rid = _rollout(kit, image=digest, all=True)
    ident = kit.identity
    body = updagent.report_envelope(bytes(32), 1, ident["serial"], 5, NOW, {"rollout": rid, "state": "refused"})
    status, _ = _call(kit, "POST", "/v1/updates/report", body)
    assert status == 403
    body = updagent.report_envelope(bytes.fromhex(ident["device_key"]), 1, ident["serial"], 5, int(time.time()),
                                    {"rollout": rid, "state": "staged"})
    assert _call(kit, "POST", "/v1/updates/report", body)[0] == 200
    assert _call(kit, "POST", "/v1/updates/report", body)[0] == 409    # the same again: a replay
    assert _status(kit, rid)["counts"] == {"staged": 1}


def test_refusals_halt_the_rollout_and_stop_the_offers(kit, tmp_path):
    digest, _ = _publish(kit, version="0.9.0")            # older than the boxes run: every box refuses
    rid = _rollout(kit, image=digest, all=True, max_failure_rate=0.5, min_reports=2)
    boxes = [_box(kit, tmp_path, "b0")]
    for i in (1, 2):
        ident = kit.add_identity("FBX-UPD-%d" % i)
        state = str(tmp_path / ("b%d" % i) / "box")
        os.makedirs(state)
        spool, up = Spool(state + "/spool"), uplink.Uplink(kit.cfg(), ident, state)
        agent = Agent(Board(str(tmp_path / ("b%d" % i) / "box")), ident, up, "1.0.0")
        agent.staged = []
        boxes.append((spool, up, agent))
    for n, (spool, up, agent) in enumerate(boxes[:2]):
        _upload(spool, up)
        assert agent.due(), n
        assert agent.run() is False and agent.staged == []
    st = _status(kit, rid)
    assert st["state"] == "halted" and st["counts"] == {"refused": 2}, st
    spool, up, agent = boxes[2]
    _upload(spool, up)
    assert not agent.due()                      # halted: the third box is never offered it


def test_a_percentage_picks_a_stable_share_of_the_fleet():
    picked = [b for b in ("FBX-%04d" % i for i in range(2000)) if updates._in_percent(b, 7, 25)]
    assert 400 < len(picked) < 600
    assert picked == [b for b in ("FBX-%04d" % i for i in range(2000)) if updates._in_percent(b, 7, 25)]


def test_fbtool_update_publish_and_status(kit, tmp_path, capsys):
    from fbtool import cli
    data, _ = uk.signed(uk.fbi(5000, version="3.0.0"), chunk_size=1024, content_key=KEY)
    (tmp_path / "fw.fbu").write_bytes(data)
    (tmp_path / "fw.fbu.key").write_text(KEY.hex())
    rec = kit.cloud.receivers["liberty"]
    (tmp_path / "token").write_text(kit.tokens["manager"] + "\n")
    base = ["update", "--service", "https://%s:%d" % (rec.address, rec.port), "--ca", os.path.join(kit.dir, "ca.pem"),
            "--token-file", str(tmp_path / "token")]
    assert cli.main(base + ["publish", str(tmp_path / "fw.fbu"), "--boxes", kit.serial, "FBX-OTHER"]) == 0
    out = capsys.readouterr().out
    assert "published app 3.0.0 for sim" in out and "rollout 1: %s, FBX-OTHER" % kit.serial in out
    assert cli.main(base + ["status", "1"]) == 0
    out = capsys.readouterr().out
    assert "rollout 1" in out and "active" in out and "no reports" in out
    (tmp_path / "fw.fbu.key").write_text(bytes(32).hex())
    assert cli.main(base + ["publish", str(tmp_path / "fw.fbu")]) == 2
    assert "content key is not this image's" in capsys.readouterr().err
