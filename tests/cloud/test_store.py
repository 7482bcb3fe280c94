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
