"""Ingest against a careless or hostile world (issue 14): a wiped box's new batch under an old
sequence number, anonymous junk, probing for serials and key ids, idle TCP connections."""
import asyncio
import logging
import shutil
import socket
import time

from cloud.store import SeqReplay
from fleetbox import cbor, envelope
from tests.cloud.test_ingest import kit, post, sealed  # noqa: F401  (kit: the fixture)
from tests.interop.test_uplink import T0, box, put_cycle, sample_records

run = asyncio.run


def test_after_a_wipe_a_new_batch_under_the_last_sequence_number_is_stored(kit, tmp_path):
    spool, up = box(kit, tmp_path)
    put_cycle(spool, 0)
    assert run(up.drain(spool)) == 1 and up.seq == 1
    shutil.rmtree(str(tmp_path / "box"))            # factory reset: spool, sequence number, delta state gone
    spool2, up2 = box(kit, tmp_path)
    put_cycle(spool2, 1)
    assert run(up2.drain(spool2)) == 1
    assert up2.stats["duplicates"] == 0 and up2.seq == 2       # told to continue after the cloud's last
    assert len(kit.store.uploads(kit.serial)) == 2
    assert [h["collected_at"] for h in kit.store.history(kit.serial, "SN-0001")] == [T0 + 300 + 1, T0 + 1]


def test_the_store_calls_a_repeated_sequence_number_a_duplicate_only_for_the_stored_upload(kit):
    batch = {"scan": "full", "cycle": T0, "records": sample_records(0, 1)}
    assert kit.store.store_upload("FBX-S", 5, 1, batch, "liberty", 100, 11) == (True, [])
    for upload, epoch, dup in ((1, 11, True), (2, 11, False), (1, 12, False)):
        try:
            kit.store.store_upload("FBX-S", 5, upload, batch, "liberty", 100, epoch)
        except SeqReplay as e:
            assert e.duplicate is dup and e.last == 5, (upload, epoch)
        else:
            raise AssertionError("seq 5 again was stored")


def test_unknown_key_and_bad_mac_get_the_same_answer(kit, caplog):
    key = bytes.fromhex(kit.identity["device_key"])
    pt = cbor.dumps({"v": 1, "upload": 1}) + cbor.dumps({"scan": "full", "cycle": T0, "records": []})
    now = int(time.time())
    probes = [envelope.seal(key, 1, "FBX-NOSUCHBOX", 1, now, pt),      # unknown serial
              envelope.seal(key, 7, kit.serial, 1, now, pt),            # unknown key id
              envelope.seal(b"\x01" * 32, 1, kit.serial, 1, now, pt)]   # known box, wrong key
    with caplog.at_level(logging.INFO, logger="fleetbox.cloud"):
        answers = [post(kit, p) for p in probes]
    assert answers == [(403, {"ok": False, "reason": "unauthenticated"})] * 3
    assert [r["reason"] for r in kit.store.rejects()] == ["unknown-key", "unknown-key", "bad-mac"]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "unknown-key" in logged and "bad-mac" in logged    # the operator still sees which


def test_anonymous_junk_keeps_the_rejects_table_bounded(kit):
    kit.store.max_rejects = 5
    for i in range(9):
        assert post(kit, b"junk %d" % i + b"\x00" * i)[0] == 400
    assert post(kit, sealed(kit, 1, 1)[:-1] + b"\x00")[0] == 403
    rows = kit.store.rejects()
    assert len(rows) == 5 and [r["reason"] for r in rows] == ["malformed"] * 4 + ["bad-mac"]
    long_junk = b"FBE\x01" + b"\x00" * 17 + b"\x20" + b"\x01" * 64
    post(kit, long_junk)
    assert all(len(r["detail"] or "") <= 200 for r in kit.store.rejects())


def test_idle_connections_without_a_client_hello_do_not_stall_uploads(kit):
    lib = kit.cloud.receivers["liberty"]
    idle = []
    try:
        for i in range(20):
            s = socket.create_connection((lib.address, lib.port), timeout=5)
            if i % 2:
                s.sendall(b"\x16\x03\x01\x02\x00")      # a TLS record header, then nothing
            idle.append(s)
        t0 = time.monotonic()
        assert post(kit, sealed(kit, 1, 1))[0] in (200, 204)
        assert post(kit, sealed(kit, 2, 2), "rescue")[0] in (200, 204)
        assert time.monotonic() - t0 < 5                  # well within the box's http_timeout_s
    finally:
        for s in idle:
            s.close()
    assert [u["upload"] for u in kit.store.uploads(kit.serial)] == [1, 2]
