"""fleetbox.downlink (box side) against docs/vectors/downlink/vectors.json, which the cloud's
independent implementation (cloud/downlink.py, cbor2, cryptography) wrote.

Runs under pytest on CPython and under tests/mprun.py on MicroPython.
"""
import json
import os
from binascii import unhexlify

from check import raises, tmp
from fleetbox import cbor, downlink, envelope


def _vectors():
    f = __file__.replace("\\", "/")
    d = f.rsplit("/", 1)[0] if "/" in f else "."
    with open(d + "/../../docs/vectors/downlink/vectors.json") as fh:
        return json.load(fh)


V = _vectors()
KEY = unhexlify(V["key"])
KID = V["kid"]
DEVICE = V["device_id"]


def _state(name, last=0):
    path = tmp("fbdown-") + name
    try:
        os.remove(path)
    except OSError:
        pass
    s = downlink.DownState(path)
    if last:
        s.remember(last)
    return s


def test_vectors():
    for v in V["vectors"]:
        state = _state("vec", v["last_accepted_seq"])
        body = unhexlify(v["answer"])
        if "error" in v:
            e = raises(downlink.DownlinkError, downlink.open_answer, KEY, KID, DEVICE, body, state)
            assert e.reason == v["error"], (v["name"], e.reason)
            assert state.last == v["last_accepted_seq"], v["name"]     # a refused answer moves nothing
            assert downlink.DownState(state.path).last == v["last_accepted_seq"]
            continue
        got = downlink.open_answer(KEY, KID, DEVICE, body, state)
        assert got.pop("_seq") == v["seq"] and got.pop("_ts") == v["ts"], v["name"]
        assert got == v["fields"], (v["name"], got)
        assert state.last == v["seq"] and downlink.DownState(state.path).last == v["seq"], v["name"]


def test_an_answer_is_accepted_once_also_after_a_reboot():
    v = V["vectors"][0]
    body = unhexlify(v["answer"])
    state = _state("once")
    assert downlink.open_answer(KEY, KID, DEVICE, body, state)["ok"] is True
    for s in (state, downlink.DownState(state.path)):      # the same process, and after a reboot
        assert raises(downlink.DownlinkError, downlink.open_answer, KEY, KID, DEVICE, body, s).reason == "replay"


def test_accept_false_checks_but_does_not_record():
    body = unhexlify(V["vectors"][0]["answer"])
    state = _state("peek")
    downlink.open_answer(KEY, KID, DEVICE, body, state, accept=False)
    assert state.last == 0
    downlink.open_answer(KEY, KID, DEVICE, body, state)
    assert state.last == 1


def _seal(fields, seq=1, ts=1767232801):
    return envelope.seal(KEY, KID, DEVICE, seq, ts, cbor.dumps(fields), downlink.CT_ANSWER, direction=envelope.DOWN)


def test_hostile_field_values_are_refused_whole():
    bad = [{"resync": "abc"}, {"resync": [-1]}, {"resync": [0] * 257}, {"last_seq": 2 ** 64 - 1},
           {"last_seq": -5}, {"last_seq": 1.0}, {"time": 2 ** 32}, {"time": "now"}, {"ok": None},
           {"upload": True}, {"reason": "x" * 257}, {"config": [1]}, {"offer": "x"}, {"revoked": 0},
           {"duplicate": "yes"}]
    for i, fields in enumerate(bad):
        e = raises(downlink.DownlinkError, downlink.open_answer, KEY, KID, DEVICE, _seal(fields, i + 1), _state("bad"))
        assert e.reason == "field", fields
    ok = downlink.open_answer(KEY, KID, DEVICE, _seal({"resync": True, "last_seq": 2 ** 63 - 1, "time": 2 ** 32 - 1,
                                                      "config": {"v": 3}, "revoked": False}), _state("good"))
    assert ok["resync"] is True and ok["last_seq"] == 2 ** 63 - 1 and ok["config"] == {"v": 3}


def test_an_offer_of_the_wrong_shape_refuses_the_whole_answer():
    from fleetbox import updagent      # registers its check of the `offer` field
    good = {"rollout": 4, "image": "ab" * 32, "url": "/v1/updates/images/" + "ab" * 32, "size": 9000,
            "version": "1.2.3", "kind": "app", "wrap": "{}"}
    assert downlink.FIELDS["offer"] is updagent.check_offer
    bad = [{}, dict(good, rollout=-1), dict(good, image="ab"), dict(good, url="http://elsewhere/x"),
           dict(good, size=True), dict(good, version="1" * 21), dict(good, wrap=["x"])]
    for i, offer in enumerate(bad):
        e = raises(downlink.DownlinkError, downlink.open_answer, KEY, KID, DEVICE,
                   _seal({"ok": True, "offer": offer}, i + 1), _state("offer-bad"))
        assert e.reason == "field" and "offer" in str(e), offer
    ok = downlink.open_answer(KEY, KID, DEVICE, _seal({"ok": True, "offer": good}, 1), _state("offer-good"))
    assert ok["offer"] == good


def test_size_and_emptiness_are_refused_before_any_work():
    state = _state("size")
    assert raises(downlink.DownlinkError, downlink.open_answer, KEY, KID, DEVICE, b"", state).reason == "malformed"
    huge = _seal({"reason": "x"}) + bytes(downlink.MAX_BODY)
    assert raises(downlink.DownlinkError, downlink.open_answer, KEY, KID, DEVICE, huge, state).reason == "too-large"
    junk = b'{"ok": true, "last_seq": 99}'
    assert raises(downlink.DownlinkError, downlink.open_answer, KEY, KID, DEVICE, junk, state).reason == "malformed"
    assert state.last == 0


def test_a_registered_field_is_checked_and_unknown_ones_dropped():
    downlink.register("x-test", lambda v: isinstance(v, int) and 0 <= v < 10)
    try:
        got = downlink.open_answer(KEY, KID, DEVICE, _seal({"x-test": 3, "other": "ignored"}), _state("reg"))
        assert got["x-test"] == 3 and "other" not in got
        e = raises(downlink.DownlinkError, downlink.open_answer, KEY, KID, DEVICE, _seal({"x-test": 10}, 2),
                   _state("reg"))
        assert e.reason == "field"
    finally:
        del downlink.FIELDS["x-test"]


def test_a_corrupt_state_file_counts_as_no_answer_yet():
    path = tmp("fbdown-corrupt")
    for content in ("", "abc", "-3", "99999999999999999999999"):
        with open(path, "w") as f:
            f.write(content)
        assert downlink.DownState(path).last == 0, content
