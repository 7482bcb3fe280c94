"""The upload payload (docs/payload.md): the box's delta encoder and the cloud's merge against
the vector, and clear refusals of payloads that break the document."""
import json
import os
import re

import pytest

from fleetbox import cbor
from fleetbox.delta import DeltaState
from cloud.payload import PayloadError, decode_payload
from cloud.store import Store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
with open(os.path.join(ROOT, "docs", "vectors", "payload-v2.json")) as _f:
    V = json.load(_f)


def test_vector_box_bytes_and_cloud_records(tmp_path):
    state = DeltaState(str(tmp_path / "delta"))
    store = Store(str(tmp_path / "cloud.sqlite"))
    for step in V["steps"]:
        out, pending = state.encode(step["upload"], step["batch"])
        # version 2 framing (what boxes before version 3 send): header, then the plain batch
        head = {"v": 2, "u": step["upload"]}
        if "b" not in out:
            head["e"] = V["epoch"]
        plaintext = cbor.dumps(head) + cbor.dumps(out)
        assert plaintext.hex() == step["plaintext"]
        head, batch = decode_payload(plaintext)
        fresh, resync = store.store_upload(V["box"], step["upload"], head["upload"], batch, "liberty", 0)
        assert fresh and resync == []
        state.commit(pending, resync)
        assert store.device(V["box"], "S1") == step["cloud_record"]
    assert len(store.history(V["box"], "S1")) == 3


def test_doc_carries_the_vector():
    with open(os.path.join(ROOT, "docs", "payload.md")) as f:
        flat = re.sub(r"\s+", "", f.read())
    for step in V["steps"]:
        assert step["plaintext"] in flat


def test_state_survives_a_reboot_and_a_lost_state_means_full_records(tmp_path):
    path = str(tmp_path / "delta")
    s = DeltaState(path)
    out, pending = s.encode(1, V["steps"][0]["batch"])
    s.commit(pending)
    again = DeltaState(path).encode(2, V["steps"][1]["batch"])[0]
    assert again["r"][0]["="] == 1 and again["b"] == 1
    with open(path, "w") as f:
        f.write("{torn")
    fresh = DeltaState(path).encode(2, V["steps"][1]["batch"])[0]
    assert "#" in fresh["r"][0] and "b" not in fresh


def _payload(head, batch):
    return cbor.dumps(head) + cbor.dumps(batch)


@pytest.mark.parametrize("head, batch, words", [
    ({"v": 4, "u": 1}, {"s": 1, "c": 1}, "header"),
    ({"v": 2, "u": -1}, {"s": 1, "c": 1}, "upload id"),
    ({"v": 2, "u": 1}, [1, 2], "not a map"),
    ({"v": 2, "u": 1}, {"s": 1, "c": 1, "r": [{"#": 1, "=": 1}]}, "exactly one"),
    ({"v": 2, "u": 1}, {"s": 1, "c": 1, "r": [{"ip": "x"}]}, "exactly one"),
    ({"v": 2, "u": 1}, {"s": 1, "c": 1, "k": [1, 2, 3]}, "pairs"),
    ({"v": 2, "u": 1}, {"s": 99, "c": 1}, "scan code"),
    ({"v": 2, "u": 1}, {"s": 1, "c": "x"}, "cycle"),
    ({"v": 2, "u": 1}, {"s": 1, "c": 1, "r": [{"=": 1, "-": "x"}]}, "bad"),
    ({"v": 1, "upload": 1}, {"scan": "full", "cycle": 1, "records": [{"=": 1}]}, "version 1"),
])
def test_bad_payloads_are_refused_with_a_reason(head, batch, words):
    with pytest.raises(PayloadError) as e:
        decode_payload(_payload(head, batch))
    assert words in str(e.value)


def test_trailing_bytes_and_garbage_are_refused():
    good = _payload({"v": 2, "u": 1}, {"s": 1, "c": 1})
    assert decode_payload(good)[0] == {"v": 2, "upload": 1, "epoch": None}
    for bad in (good + b"\x00", b"\xff\xff", b""):
        with pytest.raises(PayloadError):
            decode_payload(bad)


@pytest.mark.parametrize("epoch", [0, 65536, -1, "x", 1.5])
def test_bad_epochs_are_refused(epoch):
    with pytest.raises(PayloadError, match="epoch"):
        decode_payload(_payload({"v": 2, "u": 1, "e": epoch}, {"s": 1, "c": 1}))


def test_a_wiped_box_restarting_its_upload_ids_loses_nothing(tmp_path):
    """Upload 1 of a new spool epoch is new data, not a retry of the old epoch's upload 1."""
    store = Store(str(tmp_path / "c.sqlite"))
    rec = {"ip": "192.0.2.9", "serial": "S1", "counters": {"total": 100}}
    first = {"scan": "full", "cycle": 1, "records": [dict(rec, **{"#": 1})], "seen": [], "base": None}
    assert store.store_upload("B", 1, 1, first, "liberty", 10, epoch=11)[0] is True
    assert store.store_upload("B", 2, 1, first, "liberty", 10, epoch=11)[0] is False   # a retry
    again = dict(first, records=[dict(rec, counters={"total": 250}, **{"#": 1})])
    assert store.store_upload("B", 3, 1, again, "liberty", 10, epoch=22)[0] is True    # wiped box
    assert store.devices("B")[0]["counters"]["total"] == 250
    assert [u["upload"] for u in store.uploads("B")] == [1, 1]
