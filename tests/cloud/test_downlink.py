"""cloud/downlink.py: sealed answers under a per-box down seq kept in the database, opened by the
box's own implementation (firmware/fleetbox/downlink.py); the vectors of docs/vectors/downlink/."""
import json
import os
import subprocess
import sys
import threading

import pytest

from cloud import downlink
from cloud.store import Store
from fleetbox import downlink as box_downlink

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY = bytes(range(32))


def test_answers_carry_increasing_down_seqs_that_the_box_accepts_once(database, tmp_path):
    store = Store(database)
    state = box_downlink.DownState(str(tmp_path / "down.seq"))
    bodies = [downlink.seal_answer(store, (1, KEY), "FBX-1", {"ok": True, "upload": n, "time": 1767225600 + n})
              for n in range(3)]
    assert store.down_seq("FBX-1") == 3
    for n, body in enumerate(bodies):
        got = box_downlink.open_answer(KEY, 1, "FBX-1", body, state)
        assert (got["_seq"], got["upload"], got["time"]) == (n + 1, n, 1767225600 + n)
    with pytest.raises(box_downlink.DownlinkError) as e:
        box_downlink.open_answer(KEY, 1, "FBX-1", bodies[1], state)
    assert e.value.reason == "replay"
    store.close()


def test_a_key_lookup_needs_the_kid_and_the_seq_can_ride_a_callers_transaction(tmp_path):
    store = Store(str(tmp_path / "c.sqlite"))
    keys = {("FBX-1", 7): KEY}.get

    def lookup(d, k):
        return keys((d, k))
    with pytest.raises(downlink.AnswerError):
        downlink.seal_answer(store, lookup, "FBX-1", {"ok": True})
    with pytest.raises(downlink.AnswerError):
        downlink.seal_answer(store, lookup, "FBX-2", {"ok": True}, kid=7)
    with store.engine.begin() as conn:
        body = downlink.seal_answer((store, conn), lookup, "FBX-1", {"revoked": True}, kid=7)
    hdr, fields = downlink.open_answer(lookup, "FBX-1", body, kid=7)
    assert hdr["kid"] == 7 and hdr["seq"] == 1 and hdr["content_type"] == 2 and fields == {"revoked": True}
    store.close()


def test_fields_of_the_wrong_type_are_not_sealed(tmp_path):
    store = Store(str(tmp_path / "c.sqlite"))
    for bad in ({"ok": 1}, {"last_seq": True}, {"resync": "abc"}, {"time": 1.5}):
        with pytest.raises(downlink.AnswerError):
            downlink.seal_answer(store, (1, KEY), "FBX-1", bad)
    assert store.down_seq("FBX-1") is None      # nothing sealed, no seq spent
    store.close()


def test_concurrent_answers_never_share_a_seq(database):
    store = Store(database)
    seqs, lock = [], threading.Lock()

    def work():
        for _ in range(10):
            s = store.next_down_seq("FBX-C")
            with lock:
                seqs.append(s)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seqs) == list(range(1, 41))
    store.close()


def test_the_vectors_are_what_the_generator_writes(tmp_path):
    path = os.path.join(ROOT, "docs", "vectors", "downlink", "vectors.json")
    with open(path) as f:
        before = f.read()
    subprocess.run([sys.executable, os.path.join(ROOT, "docs", "vectors", "downlink", "generate.py")], check=True)
    with open(path) as f:
        after = f.read()
    assert after == before
    v = json.loads(after)["vectors"]
    assert {x["name"] for x in v if "error" not in x} >= {"ack", "refusal-replay", "refusal-out-of-window"}
