"""Rescue and root rotation on the update service (cloud/rescue.py): the rescue answer and its
refusals, roots served to boxes; and the box's update agent (on CPython, real HTTPS on loopback)
walking the root an offer names before it installs: a rotation below threshold is refused and
reported, a good one is kept and trusted, and an image signed with the key it revoked is refused.
The rescue client itself on MicroPython: tests/faults/test_rescue.py."""
import base64
import json
import os

import pytest

from cloud import downlink, rescue
from cloud.provision_schema import provisioned
from cloud.store import Store
from cloud.updates import Updates
from fbtool import keys, signing
from fleetbox import updagent
from tests import update_kit as uk
from tests.cloud.test_updates import KEY, _box, _call, _rollout, _status, _upload, kit  # noqa: F401  (fixture)

CERT = b"\x30\x03\x02\x01\x07"          # the box's certificate as the manifest holds it (compared bytewise)
BOX_KEY = bytes(range(32))


def _vector(name):
    with open(os.path.join(uk.VECTORS, name), "rb") as f:
        return f.read()


def _key(name):
    return keys.load_private(os.path.join(uk.VECTORS, name + ".pem"))


def weak_root_2():
    new = [_key(n).public_key() for n in ("k2", "k3", "k4")]
    return signing.signed_root(signing.root_body(2, new, 2, new, 2, uk.EXPIRES, uk.CREATED), [_key("k2")])


class _Manifest:
    def sync_manifest(self):
        pass


@pytest.fixture
def svc(tmp_path):
    store = Store(str(tmp_path / "c.sqlite"))
    with store.engine.begin() as c:
        for serial, state in (("BOX-1", "claimed"), ("BOX-2", "revoked")):
            c.execute(provisioned.insert().values(serial=serial, cert=base64.b64encode(CERT).decode(), spki="00",
                                                  claim_salt="00", claim_hash="00", state=state, kid=3))
    updates = Updates(store, None)
    return rescue.Rescue(store, lambda box, kid: BOX_KEY if (box, kid) == ("BOX-1", 3) else None, _Manifest(),
                         updates)


def _mark(svc, signers=("k2.pem", "k3.pem"), version="2.0.0", board="sim", counter=3):
    data, key = uk.signed(uk.fbi(3000, version=version, board=board), signers=signers, chunk_size=1024,
                          security_counter=counter, content_key=KEY)
    row, _ = svc.updates.publish(data, KEY)
    return svc.updates.create_rollout({"image": row["digest"], "rescue": True}), row["digest"]


def _ask(svc, cert=CERT, **req):
    return svc.rescue(cert, dict({"serial": "BOX-1", "kid": 3, "board": "sim", "counter": 0, "root": 1}, **req))


def test_the_rescue_answer_is_the_newest_marked_image_for_the_board_sealed_for_the_box(svc):
    assert _ask(svc) == (404, {"ok": False, "reason": "no-rescue-image"})
    old, _ = _mark(svc, version="1.5.0", counter=2)
    new, digest = _mark(svc, version="2.0.0", counter=3)
    _mark(svc, version="9.0.0", board="esp32-poe", counter=9)        # another board's
    assert svc.publish_root(_vector("root-2.fbr")) == (2, True)
    status, body = _ask(svc)
    assert status == 200
    hdr, fields = downlink.open_answer((3, BOX_KEY), "BOX-1", body)
    offer = fields["offer"]
    assert (offer["rollout"], offer["image"], offer["version"], offer["root"]) == (new, digest, "2.0.0", 2)
    assert updagent.check_offer(offer) and json.loads(offer["wrap"])["serial"] == "BOX-1"
    assert fields["time"] > 0 and hdr["content_type"] == downlink.CT_ANSWER
    # the box tells its refusal with the next request: that rescue rollout is not offered to it again
    status, body = _ask(svc, refused={"rollout": new, "image": digest, "reason": "unknown_key", "detail": "k9"})
    assert downlink.open_answer((3, BOX_KEY), "BOX-1", body)[1]["offer"]["rollout"] == old
    states = {p["box"]: (p["state"], p["reason"]) for p in svc.updates.rollout_status(new)[0]["progress"]}
    assert states == {"BOX-1": ("refused", "unknown_key")}
    # a rescue rollout is never an offer in the ordinary answers
    assert svc.updates.offer_for("BOX-1", 3) is None


def test_a_rescued_image_the_loader_left_is_recorded_reverted_and_not_offered_again(svc):
    old, _ = _mark(svc, version="1.5.0", counter=2)
    new, digest = _mark(svc, version="2.0.0", counter=3)
    status, body = _ask(svc)
    assert downlink.open_answer((3, BOX_KEY), "BOX-1", body)[1]["offer"]["rollout"] == new
    # the rescued image crash-looped: the loader left it and the box is in rescue again
    reverted = {"rollout": new, "image": digest, "reason": "crash_loop", "detail": "the loader left slot_b: crash_loop"}
    status, body = _ask(svc, reverted=reverted)
    assert downlink.open_answer((3, BOX_KEY), "BOX-1", body)[1]["offer"]["rollout"] == old
    progress = svc.updates.rollout_status(new)[0]["progress"]
    assert [(p["box"], p["state"], p["reason"], p["detail"]) for p in progress] == [
        ("BOX-1", "reverted", "crash_loop", "the loader left slot_b: crash_loop")]
    # said again with every request until a new image is staged: recorded once, the rollout unchanged
    updated = progress[0]["updated"]
    _ask(svc, reverted=reverted)
    assert svc.updates.rollout_status(new)[0]["progress"][0]["updated"] == updated
    # an ordinary rollout: recorded only once it was offered to this box (its update crash-looped and
    # the slot it fell back to no longer verifies); a rollout the box never had is not its to fail
    plain = svc.updates.create_rollout({"image": digest, "boxes": ["BOX-1"]})
    _ask(svc, reverted=dict(reverted, rollout=plain))
    assert svc.updates.rollout_status(plain)[0]["progress"] == []
    svc.updates._progress("BOX-1", plain, "offered", None, None)      # as an ordinary answer's offer records it
    _ask(svc, reverted=dict(reverted, rollout=plain))
    assert [(p["state"], p["reason"]) for p in svc.updates.rollout_status(plain)[0]["progress"]] == [
        ("reverted", "crash_loop")]


def test_the_rescue_route_refuses_who_it_cannot_tell_or_serve(svc):
    _mark(svc)
    assert _ask(svc, cert=None) == (403, {"ok": False, "reason": "no-certificate"})
    assert _ask(svc, cert=CERT + b"\x00") == (403, {"ok": False, "reason": "wrong-certificate"})
    assert _ask(svc, serial="BOX-9") == (403, {"ok": False, "reason": "unknown-box"})
    assert _ask(svc, serial="BOX-2") == (403, {"ok": False, "reason": "revoked"})
    assert _ask(svc, kid=2) == (409, {"ok": False, "reason": "stale-key"})
    assert _ask(svc, board=7) == (400, {"ok": False, "reason": "malformed"})
    assert _ask(svc, board="esp32-poe") == (404, {"ok": False, "reason": "no-rescue-image"})


def test_roots_are_published_replaced_and_served(svc):
    with pytest.raises(rescue.RootError):
        svc.publish_root(b"FBUP" + bytes(20))
    assert svc.newest_root() == 0 and svc.root_bytes(2) is None
    assert svc.publish_root(weak_root_2()) == (2, True)
    assert svc.publish_root(_vector("root-2.fbr")) == (2, True)       # the right one replaces it
    assert svc.publish_root(_vector("root-2.fbr")) == (2, False)
    assert svc.root_bytes(2) == _vector("root-2.fbr") and svc.newest_root() == 2


def _publish_signed(kit, signers, version):
    data, _ = uk.signed(uk.fbi(20000, version=version), signers=signers, chunk_size=1024, content_key=KEY)
    status, reply = _call(kit, "POST", "/v1/updates/images", data, {"X-Content-Key": KEY.hex()})
    assert status == 201, reply
    return json.loads(reply)["image"]


def _offer_and_run(kit, spool, up, agent, digest, cycle):
    rid = _rollout(kit, image=digest, boxes=[kit.serial])
    _upload(spool, up, cycle)
    assert agent.due() and agent.offer["rollout"] == rid
    agent.run()
    return rid


def test_an_offer_walks_the_root_rotation_before_the_install(kit, tmp_path, monkeypatch):  # noqa: F811
    rotated = str(tmp_path / "rotated.fbr")
    monkeypatch.setattr(updagent, "ROTATED_FILE", rotated)
    spool, up, agent = _box(kit, tmp_path)
    k2k4 = _publish_signed(kit, ("k2.pem", "k4.pem"), "2.0.0")
    # a root 2 signed by k2 alone: below the thresholds; refused, reported, nothing kept
    status, reply = _call(kit, "POST", "/v1/updates/roots", weak_root_2())
    assert status == 201 and json.loads(reply)["root"] == 2
    assert _call(kit, "POST", "/v1/updates/roots", weak_root_2(), role="technician")[0] == 403
    rid = _offer_and_run(kit, spool, up, agent, k2k4, 0)
    p = _status(kit, rid)["progress"][0]
    assert (p["state"], p["reason"]) == ("refused", "threshold") and "root rotation" in p["detail"]
    assert not os.path.exists(rotated) and agent.staged == []
    # the real root 2 (k1 revoked, k4 in): walked, kept, and the image signed under it installs
    assert _call(kit, "POST", "/v1/updates/roots", _vector("root-2.fbr"))[0] == 201
    rid = _offer_and_run(kit, spool, up, agent, k2k4, 1)
    assert _status(kit, rid)["progress"][0]["state"] == "staged"
    with open(rotated, "rb") as f:
        assert f.read() == _vector("root-2.fbr")
    assert agent.staged[-1]["version"] == "2.0.0"
    # an image signed with the revoked k1 (and k2): refused under the rotated root
    k1k2 = _publish_signed(kit, ("k1.pem", "k2.pem"), "2.1.0")
    agent.version = "2.0.0"
    rid = _offer_and_run(kit, spool, up, agent, k1k2, 2)
    p = _status(kit, rid)["progress"][0]
    assert (p["state"], p["reason"]) == ("refused", "threshold"), p


def test_fbtool_update_publish_rescue_and_root(kit, tmp_path, capsys):  # noqa: F811
    from fbtool import cli
    data, _ = uk.signed(uk.fbi(5000, version="3.1.0"), chunk_size=1024, content_key=KEY)
    (tmp_path / "fw.fbu").write_bytes(data)
    (tmp_path / "fw.fbu.key").write_text(KEY.hex())
    (tmp_path / "token").write_text(kit.tokens["manager"] + "\n")
    rec = kit.cloud.receivers["liberty"]
    base = ["update", "--service", "https://%s:%d" % (rec.address, rec.port), "--ca", os.path.join(kit.dir, "ca.pem"),
            "--token-file", str(tmp_path / "token")]
    assert cli.main(base + ["publish", str(tmp_path / "fw.fbu"), "--rescue"]) == 0
    assert "rollout 1: the rescue image of board sim" in capsys.readouterr().out
    assert cli.main(base + ["root", os.path.join(uk.VECTORS, "root-2.fbr")]) == 0
    assert "root version 2 published" in capsys.readouterr().out
    assert cli.main(base + ["status"]) == 0
    assert "to rescue  active" in capsys.readouterr().out
    assert cli.main(base + ["root", str(tmp_path / "fw.fbu")]) == 2
    assert "not fleetbox root metadata" in capsys.readouterr().err
