"""The store's exactly-once rule is the database's: racing transactions on one box, each with its
own connection, store an upload once, on SQLite and on PostgreSQL."""
import threading

from cloud.store import SeqReplay, Store


def batch(n):
    return {"scan": "full", "cycle": 1000, "seen": [], "base": None,
            "records": [{"serial": "S%d" % i, "ip": "10.0.0.%d" % i, "collected_at": 1000 + i,
                         "counters": {"total": i}} for i in range(n)]}


def race(store, calls):
    """Run calls (box, seq, upload) at once in threads; outcome of each: "fresh", "again",
    "duplicate" or "replay"."""
    barrier = threading.Barrier(len(calls))
    out = [None] * len(calls)

    def one(i, box, seq, upload):
        barrier.wait()
        try:
            fresh, _ = store.store_upload(box, seq, upload, batch(4), "liberty", 100)
            out[i] = "fresh" if fresh else "again"
        except SeqReplay as e:
            out[i] = "duplicate" if e.duplicate else "replay"
    threads = [threading.Thread(target=one, args=(i,) + c) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_racing_copies_of_one_envelope_store_it_once(database):
    store = Store(database, pool_size=8)
    try:
        out = race(store, [("B", 1, 1)] * 8)
        assert sorted(out) == ["duplicate"] * 7 + ["fresh"]
        # a resend of the same upload under new sequence numbers, racing: stored once still
        out = race(store, [("B", seq, 1) for seq in range(2, 10)])
        assert set(out) <= {"again", "replay"} and out.count("again") >= 1
        out = race(store, [("B", 20 + i, 2 + i) for i in range(8)])   # new uploads, racing
        assert out.count("fresh") >= 1 and set(out) <= {"fresh", "replay"}
        stored = {u["upload"] for u in store.uploads("B")}
        assert len(store.uploads("B")) == len(stored) == 1 + out.count("fresh")
        assert len(store.history("B", "S1", limit=1000)) == len(stored)
        assert store.last_seq("B") == 27
    finally:
        store.close()


def test_an_upload_takes_its_answers_down_seq_in_its_own_transaction(database):
    """ingest's down seq continues the box's sequence with the answers sealed apart from an upload
    (refusals), and a refused upload (rolled back) spends none."""
    store = Store(database)
    try:
        assert store.ingest("B", 1, 1, batch(2), "liberty", 100)[2] == 1
        assert store.next_down_seq("B") == 2
        fresh, resync, down = store.ingest("B", 2, 1, batch(2), "liberty", 100)     # a copy under a new seq
        assert (fresh, resync, down) == (False, [], 3)
        try:
            store.ingest("B", 2, 2, batch(2), "liberty", 100)
            raise AssertionError("a replayed seq was stored")
        except SeqReplay as e:
            assert e.last == 2 and not e.duplicate
        assert store.down_seq("B") == 3
        assert store.ingest("B", 3, 2, batch(2), "liberty", 100)[2] == 4
        assert store.down_seq("B") == 4 and store.last_seq("B") == 3
    finally:
        store.close()


def test_large_and_mixed_batches_are_stored_whole_in_multi_row_inserts(database, monkeypatch):
    """Batches of more rows than one INSERT takes, integers of every size and None in one
    statement, devices named by number and a delta against them (payload v2's "seen") come back
    as sent."""
    import cloud.store
    monkeypatch.setattr(cloud.store, "ROWS_PER_INSERT", 7)
    store = Store(database)
    try:
        sizes = (1, 7, 8, 23, 3)
        for upload, n in enumerate(sizes, start=1):
            b = batch(n)
            for i, rec in enumerate(b["records"]):
                rec["#"] = i
                rec["collected_at"] = (1 << 40) + i if i % 2 else i
                rec["counters"]["total"] = None if i % 3 == 0 else (1 << 33) * i
            assert store.ingest("B", upload, upload, b, "liberty", 100)[:2] == (True, [])
        seen = {"scan": "full", "cycle": 2000, "records": [], "seen": [0, 5, 22, 6], "base": None}
        assert store.ingest("B", 9, 9, seen, "liberty", 100)[:2] == (True, [])
        assert len(store.device_keys("B")) == 23
        assert len(store.uploads("B")) == len(sizes) + 1
        assert len(store.history("B", "S0")) == len(sizes) + 1
        assert len(store.history("B", "S22")) == 2 and len(store.history("B", "S8")) == 1
        for i in (0, 1, 21, 22):
            dev = store.device("B", "S%d" % i)
            assert dev["counters"]["total"] == (None if i % 3 == 0 else (1 << 33) * i)
            if i in (0, 22):
                assert dev["collected_at"] == 2005 + (i == 22)   # the cycle plus the offset "@"
            else:
                assert dev["collected_at"] == (1 << 40) + i
    finally:
        store.close()
