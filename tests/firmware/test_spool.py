import os

from fleetbox.spool import Spool


def _fresh(name):
    d = "/tmp/fbspool-" + name
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
