import os

from check import tmp
from fleetbox.spool import Spool


def _fresh(name):
    d = tmp("fbspool-") + name
    try:
        for n in os.listdir(d):
            os.remove(d + "/" + n)
        os.rmdir(d)
    except OSError:
        pass
    return d


def test_fifo_survives_reopen():
    d = _fresh("fifo")
    s = Spool(d)
    a = s.put(b"one")
    s.put(b"two")
    s2 = Spool(d)  # as after a reboot
    assert len(s2) == 2
    assert s2.peek() == (a, b"one")
    s2.ack(a)
    assert s2.peek()[1] == b"two"
    assert len(Spool(d)) == 1


def test_interrupted_write_is_dropped():
    d = _fresh("tmp")
    s = Spool(d)
    s.put(b"kept")
    with open(d + "/0000000002.tmp", "wb") as f:
        f.write(b"half")
    s2 = Spool(d)
    assert len(s2) == 1 and s2.peek()[1] == b"kept"
    assert "0000000002.tmp" not in os.listdir(d)


def test_bounded_evicts_oldest():
    d = _fresh("bound")
    s = Spool(d, max_items=3)
    for i in range(5):
        s.put(bytes([i]))
    assert len(s) == 3 and s.evicted == 2
    assert s.peek()[1] == bytes([2])
    assert s.put(b"x") == 6


def test_ids_never_repeat_after_drain():
    d = _fresh("ids")
    s = Spool(d)
    a = s.put(b"a")
    s.ack(a)
    assert len(s) == 0
    assert Spool(d).put(b"b") == a + 1


def test_eviction_order_bulk_then_counters_then_alerts_latest_counters_last():
    from fleetbox.spool import BULK, COUNTERS, ALERTS
    d = _fresh("prio")
    s = Spool(d, max_items=4)
    a1 = s.put(b"alert1", ALERTS)
    c1 = s.put(b"counters1", COUNTERS)
    b1 = s.put(b"bulk1", BULK)
    c2 = s.put(b"counters2", COUNTERS)
    s.put(b"bulk2", BULK)            # over bound: bulk1 goes
    assert b1 not in s.ids() and s.evicted_ids == [b1]
    s.put(b"alert2", ALERTS)         # bulk2 goes
    s.put(b"alert3", ALERTS)         # the older counters go, the latest stay
    assert c1 not in s.ids() and c2 in s.ids()
    s.put(b"alert4", ALERTS)         # then the oldest alert
    assert a1 not in s.ids() and c2 in s.ids()
    reopened = Spool(d, max_items=4)
    assert reopened.ids() == s.ids()


def test_bounded_by_bytes():
    d = _fresh("bytes")
    s = Spool(d, max_items=100, max_bytes=250)
    for _i in range(5):
        s.put(bytes(100))
    assert len(s) == 2 and s.bytes == 200 and s.evicted == 3
    assert Spool(d).bytes == 200


def test_torn_last_marker_never_reuses_ids():
    d = _fresh("last")
    s = Spool(d)
    for _ in range(3):
        s.ack(s.put(b"x"))
    with open(d + "/last.tmp", "w") as f:   # a power cut while the marker was rewritten
        f.write("")
    s2 = Spool(d)
    assert s2.put(b"y") == 4
    assert "last.tmp" not in os.listdir(d)


def test_epoch_is_kept_and_a_wiped_spool_draws_a_new_one():
    d = _fresh("epoch")
    first = Spool(d).epoch
    assert 0 < first < 65536
    assert Spool(d).epoch == first          # a reboot keeps it
    seen = set()
    for _ in range(4):                      # wiping the partition starts a new epoch
        seen.add(Spool(_fresh("epoch")).epoch)
    assert len(seen) >= 2 and 0 not in seen


def test_an_unreadable_batch_is_dropped_not_blocking():
    import json
    d = _fresh("corrupt")
    s = Spool(d)
    bad = s.put(b'{"scan": "full", "rec')      # torn by flash corruption
    good = s.put(b'{"scan": "full", "records": []}')
    assert s.peek(json.load) == (good, {"scan": "full", "records": []})
    assert s.corrupt == 1 and len(s) == 1
    assert Spool(d).put(b"{}") == good + 1 and bad < good   # ids still never repeat


def test_a_batch_of_the_wrong_shape_is_dropped_not_blocking():
    # Valid JSON that the uplink cannot encode: at the head of the queue it stopped every drain.
    import json
    d = _fresh("shape")
    s = Spool(d)
    deep = {"records": [{"x": 0}]}
    inner = deep["records"][0]
    for _ in range(40):
        inner["x"] = [{}]
        inner = inner["x"][0]
    bad = [s.put(json.dumps(b)) for b in (
        [1, 2], 7, "full", None, {"scan": "full"}, {"records": {"a": 1}}, {"records": [3]},
        {"records": [], "cycle": "soon"}, {"records": [], "scan": 5}, {"records": [], "cycle": True},
        {"records": [{"collected_at": "noon"}]}, {"records": [{"uptime_s": [1]}]}, deep)]
    good = s.put(json.dumps({"scan": "counters", "cycle": 5, "records": [{"ip": "127.0.0.1", "uptime_s": 3}]}))
    ident, batch = s.peek(json.load)
    assert ident == good and batch["records"][0]["uptime_s"] == 3
    assert s.corrupt == len(bad) and s.ids() == [good]


def test_an_unbounded_byte_size_is_not_the_default():
    from fleetbox.spool import DEFAULT_MAX_BYTES
    d = _fresh("defbytes")
    s = Spool(d)
    assert s.max_bytes == DEFAULT_MAX_BYTES and 0 < DEFAULT_MAX_BYTES <= 512 * 1024
    big = b"x" * (DEFAULT_MAX_BYTES // 4)
    for _ in range(6):
        s.put(big)
    assert s.bytes <= DEFAULT_MAX_BYTES and len(s) == 4 and s.evicted == 2
    assert Spool(d, max_bytes=None).max_bytes == DEFAULT_MAX_BYTES
