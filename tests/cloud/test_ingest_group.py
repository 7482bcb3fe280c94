"""Group commit on PostgreSQL (cloud/ingest_group.py): the uploads of several requests in one
transaction store each envelope exactly once, within a group, across two workers' groups racing,
and a refused or failing upload inside a group leaves the others stored."""
import json
import threading
import time

import cbor2

from cloud import downlink
from cloud.app import Endpoint
from cloud.ingest_group import handle_group, ingest_many
from cloud.store import SeqReplay, Store
from tests.cloud.service import _firmware, claim_boxes, printer_records, seal_uploads

KEYS = {"FBX-G%02d" % i: bytes([i + 1]) * 32 for i in range(6)}


def keys(box, kid):
    return KEYS.get(box) if kid == 1 else None


def outcome(status, reply, box):
    body = downlink.open_answer((1, KEYS[box]), box, reply)[1] if reply[:3] == b"FBE" else cbor2.loads(reply)
    if status == 200:
        return "duplicate" if body.get("duplicate") else "stored"
    return body["reason"]


def group(endpoint, envelopes):
    return [(r.status_code, r.body) for r in handle_group(endpoint, [(e, "127.0.0.1", time.monotonic())
                                                                      for e in envelopes])]


def test_a_group_stores_each_upload_once_and_refuses_only_what_it_must(pg_url):
    store = Store(pg_url)
    ep = Endpoint("liberty", store, keys)
    try:
        a, b, c = (seal_uploads(box, KEYS[box], n, 3) for n, box in enumerate(("FBX-G00", "FBX-G01", "FBX-G02")))
        cb, env = _firmware()
        junk = env.seal(KEYS["FBX-G03"], 1, "FBX-G03", 1, int(time.time()), b"\xff\x00junk")
        # a copy inside the group (the second waits for the first's commit), a bad payload, a stranger
        got = group(ep, [a[0], b[0], a[0], junk, b"FBE not an envelope", c[0]])
        assert [s for s, _ in got] == [200, 200, 200, 400, 400, 200]
        boxes = ["FBX-G00", "FBX-G01", "FBX-G00", "FBX-G03", None, "FBX-G02"]
        assert [outcome(s, r, x) if x else s for (s, r), x in zip(got, boxes)][:3] == ["stored", "stored", "duplicate"]
        # a replay (seq 1 again after 2) next to new uploads: refused alone
        got = group(ep, [a[1], b[0], c[1]])
        assert [outcome(s, r, x) for (s, r), x in zip(got, ("FBX-G00", "FBX-G01", "FBX-G02"))] \
            == ["stored", "duplicate", "stored"]
        got = group(ep, [a[0], b[1], c[2]])
        assert [outcome(s, r, x) for (s, r), x in zip(got, ("FBX-G00", "FBX-G01", "FBX-G02"))] \
            == ["replay", "stored", "stored"]
        assert {x["box"]: x["uploads"] for x in store.boxes()} == {"FBX-G00": 2, "FBX-G01": 2, "FBX-G02": 3,
                                                                    "FBX-G03": 0}
        assert len(store.history("FBX-G02", "B00002-P03", limit=100)) == 3
        assert [r["reason"] for r in store.rejects()] == ["bad-payload", "malformed", "replay"]
        # down seqs: one per answer sealed for the box, in order
        assert store.down_seq("FBX-G00") == 4 and store.down_seq("FBX-G02") == 3
    finally:
        store.close()


def test_an_upload_that_fails_the_groups_transaction_fails_alone(pg_url):
    store = Store(pg_url)
    ep = Endpoint("liberty", store, keys)
    try:
        cb, env = _firmware()
        good = [seal_uploads(box, KEYS[box], n, 1)[0] for n, box in enumerate(("FBX-G00", "FBX-G01"))]
        bad_records = printer_records(4, 2)
        bad_records[1]["collected_at"] = 1 << 70         # no BIGINT holds it: the database refuses the row
        bad = env.seal(KEYS["FBX-G04"], 1, "FBX-G04", 1, int(time.time()),
                       cb.dumps({"v": 1, "upload": 1}) + cb.dumps({"scan": "full", "cycle": 1, "records": bad_records}))
        got = group(ep, [good[0], bad, good[1]])
        assert [s for s, _ in got] == [200, 500, 200]
        assert {x["box"]: x["uploads"] for x in store.boxes()} == {"FBX-G00": 1, "FBX-G01": 1}
    finally:
        store.close()


def test_two_workers_groups_racing_on_the_same_envelopes_store_each_once(pg_url):
    stores = [Store(pg_url, migrate=i == 0) for i in range(2)]
    endpoints = [Endpoint("liberty", s, keys) for s in stores]
    try:
        boxes = sorted(KEYS)
        jobs = {box: seal_uploads(box, KEYS[box], n, 4) for n, box in enumerate(boxes)}
        results = [[], []]

        def worker(w):
            for u in range(4):
                order = boxes if w == 0 else boxes[::-1]       # opposite lock orders asked for
                envs = [jobs[box][u] for box in order] + [jobs[order[0]][u]]
                got = group(endpoints[w], envs)
                results[w] += [outcome(s, r, box) for (s, r), box in zip(got, order + order[:1])]
        threads = [threading.Thread(target=worker, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        every = results[0] + results[1]
        assert every.count("stored") == len(boxes) * 4
        assert set(every) <= {"stored", "duplicate", "replay"}
        assert {x["box"]: (x["uploads"], x["last_seq"]) for x in stores[0].boxes()} == {b: (4, 4) for b in boxes}
        assert len(stores[0].history(boxes[0], "B00000-P01", limit=100)) == 4
    finally:
        for s in stores:
            s.close()


def test_ingest_many_answers_like_ingest(pg_url):
    store = Store(pg_url)
    try:
        batch = {"scan": "full", "cycle": 1000, "seen": [], "base": None, "records": printer_records(0, 3)}
        delta = {"scan": "counters", "cycle": 1300, "seen": [], "base": 1,
                 "records": [{"=": 7, "counters": {"total": 5}}]}
        out = ingest_many(store, [("A", 1, 1, batch, "liberty", 100, None), ("B", 1, 1, batch, "liberty", 100, None)])
        assert [o[:2] for o in out] == [(True, []), (True, [])]
        out = ingest_many(store, [("A", 1, 1, batch, "liberty", 100, None), ("B", 2, 1, batch, "rescue", 100, None),
                                  ("C", 1, 1, delta, "liberty", 100, None)])
        assert isinstance(out[0], SeqReplay) and out[0].duplicate
        assert out[1][:2] == (False, []) and out[2][:2] == (True, True)     # C's base is not stored: all in full
        out = ingest_many(store, [("A", 2, 2, dict(delta, base=1), "liberty", 100, None)])
        assert out[0][:2] == (True, [7])                                     # base holds; device 7 unknown
        assert store.last_seq("B") == 2 and [u["endpoint"] for u in store.uploads("B")] == ["liberty"]
    finally:
        store.close()


def test_records_keep_counters_beyond_64_bits_and_read_back_alike(database):
    """Records' JSON is written by orjson, which cannot write an integer beyond 64 bits: such a
    record is still stored whole (by json), one by one and, on PostgreSQL, in a group."""
    store = Store(database)
    try:
        huge = {"ip": "10.0.0.9", "port": 161, "serial": "BIG-1", "collected_at": 1800000000, "uptime_s": 5,
                "counters": {"total": 1 << 70, "mono": 12}, "supplies": [{"percent": 40.5}]}
        plain = dict(huge, serial="PLAIN-1", counters={"total": 99}, status={"text": "caf\u00e9 \u2603"})
        batch = {"scan": "full", "cycle": 1800000000, "records": [huge, plain], "seen": [], "base": None}
        store.ingest("FBX-J01", 1, 1, batch, "liberty", 100, 1)
        if store.dialect == "postgresql":
            assert ingest_many(store, [("FBX-J02", 1, 1, batch, "liberty", 100, 1)])[0][0] is True
        for box in ("FBX-J01", "FBX-J02") if store.dialect == "postgresql" else ("FBX-J01",):
            assert store.history(box, "BIG-1") == [huge]
            assert store.history(box, "PLAIN-1") == [plain]
            assert store.device(box, "BIG-1") == huge
    finally:
        store.close()


def test_a_group_stores_the_same_devices_and_readings_as_one_by_one(pg_url):
    """The group's one statement for readings and devices (records embedded as JSON) leaves both
    tables as Store.ingest does, through deltas, a delta for a device not held (a stand-in row), a
    full record that takes the stand-in's number, and a device twice in one batch."""
    store = Store(pg_url)
    try:
        full = printer_records(4, 3, t0=1800000000)
        batches = [
            {"scan": "full", "cycle": 1800000000, "records": [dict(r, **{"#": n}) for n, r in enumerate(full)]},
            {"scan": "counters", "cycle": 1800000300, "base": 1, "records": [
                {"=": 0, "counters": {"total": 11}, "@": 2, "^": 0},
                {"=": 9, "counters": {"total": 5}},                                 # not held: a stand-in
                {"=": 1, "-": ["hostname"], "uptime_s": None, "status": {"device": "warning"}},
                {"=": 0, "counters": {"total": 12}, "@": 3}]},                     # twice in one batch
            {"scan": "full", "cycle": 1800000600, "base": 2, "records": [
                dict(full[2], serial="NEW-9", **{"#": 9}),                         # takes #9's number
                {"=": 2, "supplies": [{"percent": 3.5}]}],
             "seen": [0, 7, 1, 8]},
        ]
        for n, batch in enumerate(batches, 1):
            batch = dict({"seen": [], "base": None}, **batch)
            store.ingest("ONE", n, n, batch, "liberty", 100, 1)
            assert ingest_many(store, [("GRP", n, n, batch, "liberty", 100, 1)])[0][0] is True
        with store.engine.connect() as c:
            def rows(sql, box):
                return [tuple(r) for r in c.exec_driver_sql(sql, (box,)).all()]
            for sql in ("SELECT device, num, ip, manufacturer, model, serial, record, clock FROM devices "
                        "WHERE box = %s ORDER BY device",
                        "SELECT device, collected_at, cycle, scan, total, lowest_supply, record FROM readings "
                        "WHERE box = %s ORDER BY id"):
                assert rows(sql, "GRP") == rows(sql, "ONE") and rows(sql, "ONE")
            assert "NEW-9" in {r[0] for r in rows("SELECT device FROM devices WHERE box = %s", "GRP")}
            assert "#9" not in {r[0] for r in rows("SELECT device FROM devices WHERE box = %s", "GRP")}
    finally:
        store.close()


def test_devices_rows_are_rewritten_in_place_on_postgresql(pg_url):
    """Migration 0007 leaves room on devices' pages: an upload's new device versions stay on their
    page (HOT updates, no index entries), which is most of what the devices' upsert costs."""
    store = Store(pg_url)
    try:
        with store.engine.connect() as c:
            assert "fillfactor=50" in c.exec_driver_sql(
                "SELECT reloptions FROM pg_class WHERE relname = 'devices'").scalar()
        pages = []
        for n in (1, 2, 3):
            batch = {"scan": "full", "cycle": 1800000000 + n, "seen": [], "base": None,
                     "records": printer_records(5, 8, n)}
            ingest_many(store, [("HOT", n, n, batch, "liberty", 100, 1)])
            with store.engine.connect() as c:
                pages.append([r[0] for r in c.exec_driver_sql(
                    "SELECT (ctid::text::point)[0] FROM devices WHERE box = 'HOT' ORDER BY device").all()])
        assert pages[0] == pages[1] == pages[2]
    finally:
        store.close()


def test_a_group_asks_the_database_about_its_provisioned_boxes_once(pg_url):
    """Keys, quarantine and a newer configuration of a group's boxes come from one query
    (Provisioning.reading), and each box still gets its own decision: a claimed box is stored, a
    revoked one refused, a quarantined one's envelope kept aside, a box with a newer configuration
    told so in its answer."""
    from sqlalchemy import event, update

    from cloud.provision import Provisioning, either_keys
    from cloud.provision_schema import provisioned, quarantine

    store = Store(pg_url)
    try:
        boxes = ["FBX-G%02d" % i for i in range(4)]
        claim_boxes(store, {b: KEYS[b] for b in boxes})
        with store.engine.begin() as c:
            c.execute(update(provisioned).where(provisioned.c.serial == "FBX-G01").values(state="revoked"))
            c.execute(update(provisioned).where(provisioned.c.serial == "FBX-G02").values(quarantined=1))
            c.execute(update(provisioned).where(provisioned.c.serial == "FBX-G03").values(config_version=2))
        prov = Provisioning(store, [])
        ep = Endpoint("liberty", store, either_keys(prov.keys, lambda box, kid: None), guard=prov)
        asked = []

        def count(conn, cursor, statement, *args):
            if "FROM provisioned" in statement:
                asked.append(statement)
        event.listen(store.engine, "before_cursor_execute", count)
        got = group(ep, [seal_uploads(b, KEYS[b], n, 1)[0] for n, b in enumerate(boxes)])
        event.remove(store.engine, "before_cursor_execute", count)
        assert len(asked) == 1
        assert [s for s, _ in got] == [200, 403, 403, 200]
        answers = [downlink.open_answer((1, KEYS[b]), b, r)[1] if r[:3] == b"FBE" else json.loads(r)
                   for b, (_, r) in zip(boxes, got)]
        assert answers[0]["ok"] and "config" not in answers[0]
        assert answers[1]["reason"] == "unauthenticated"      # the precise reason is in rejects
        assert answers[2]["reason"] == "quarantined"
        assert [r["reason"] for r in store.rejects()] == ["unknown-key", "quarantined"]
        assert answers[3]["ok"] and answers[3]["config"] == {"v": 2}
        assert {x["box"]: x["uploads"] for x in store.boxes()} == {"FBX-G00": 1, "FBX-G03": 1}
        with store.engine.connect() as c:
            assert [r.serial for r in c.execute(quarantine.select())] == ["FBX-G02"]
    finally:
        store.close()
