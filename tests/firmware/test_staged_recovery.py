"""What an interrupted sweep left staged (spool.STAGED) becomes a batch when the spool starts,
or is removed when nothing in it can be a record; nothing about it stops the spool from
starting. Both runtimes (flash faults through port.set_flash_fault, as the sim board's
flash switch)."""
import json
import os
from binascii import hexlify

from check import LogCapture, fresh_dir, rmtree
from fleetbox import batchfile, devstate, port
from fleetbox.batchfile import BatchFile
from fleetbox.spool import ALERTS, BULK, COUNTERS, STAGED, STAGED_LINE_MAX, Spool, read_batch

HEAD = {"scan": "counters", "cycle": 1700000000, "h": {"upload": 2}}


def _record(i, pad=40):
    return {"ip": "10.0.0.%d" % i, "serial": "S%d" % i, "collected_at": 1700000000 + i, "uptime_s": 100 + i,
            "model": "Mödel €" + "x" * pad}


# a directory of this run's own: other checkouts on the machine run these tests at the same time
_RUN = hexlify(port.urandom(4)).decode()


def _dir(name):
    return fresh_dir("/tmp/fb-staged-%s-%s" % (name, _RUN))


def _stage(d, text):
    try:
        os.mkdir(d + "/spool")
    except OSError:
        pass
    with open(d + "/spool/" + STAGED, "w") as f:
        f.write(text)


def _lines(*objs):
    return "".join(json.dumps(o) + "\n" for o in objs)


def _start(d, **kw):
    with LogCapture(port.INFO) as log:
        spool = Spool(d + "/spool", **kw)
    return spool, log.text()


def _staged_left(d):
    return STAGED in os.listdir(d + "/spool")


def test_a_staged_batch_with_a_cut_last_line_is_adopted_and_the_next_ids_follow():
    d = _dir("adopt")
    spool = Spool(d + "/spool")
    before = [spool.put(b'{"scan": "full", "cycle": 1, "records": []}', BULK) for _ in range(2)]
    recs = [_record(i) for i in range(3)]
    _stage(d, _lines(HEAD, *recs) + '{"ip": "10.0.0.9", "seria')      # the power went mid-record
    spool, log = _start(d)
    assert not _staged_left(d)
    adopted = before[-1] + 1
    assert spool.ids() == before + [adopted]
    assert "%010d-%d.b" % (adopted, COUNTERS) in os.listdir(d + "/spool")   # the class of its scan
    assert "recovered 3 records an interrupted sweep staged as batch %d, 1 cut line(s) skipped" % adopted in log, log
    assert log.startswith("W spool:"), log      # a line was lost: a warning
    for ident in before:
        spool.ack(ident)
    with LogCapture() as log:
        assert spool.peek(read_batch) == (adopted, dict(HEAD, records=recs))
    assert "1 record line(s) cut" in log.text()
    assert spool.put(b"next") == adopted + 1
    spool.ack(adopted)
    assert Spool(d + "/spool").put(b"after") == adopted + 2       # ids never repeat across a start
    rmtree(d)


def test_a_whole_staged_batch_is_recovered_with_an_info_line_and_its_scan_class():
    for scan, klass in (("full", BULK), ("alerts", ALERTS), (None, BULK)):
        d = _dir("whole")
        _stage(d, _lines(dict(HEAD, scan=scan), _record(1)))
        spool, log = _start(d)
        assert spool.ids() == [1] and os.listdir(d + "/spool").count("0000000001-%d.b" % klass) == 1, scan
        assert log == "I spool: recovered 1 records an interrupted sweep staged as batch 1", log
    rmtree(d)


def test_a_staged_file_without_a_record_or_a_batch_head_is_removed():
    head = json.dumps(HEAD) + "\n"
    rec = json.dumps(_record(1)) + "\n"
    cases = {
        "head only": (head, "I spool: staged batch holds no complete record (0 cut), removed"),
        "empty": ("", "no head line"),
        "head cut": (head[:20], "no head line"),
        "head and a cut record": (head + rec[:30], "W spool: staged batch holds no complete record (1 cut), removed"),
        "garbage head": ("\x00\xff garbage }{\n" + rec, "W spool: staged batch removed"),
        "head not an object": ("[1, 2]\n" + rec, "not a batch head"),
        "head with records": ('{"scan": "full", "records": []}\n' + rec, "not a batch head"),
        "head of the wrong shape": ('{"scan": 7, "cycle": 1}\n' + rec, "scan is not a string"),
        # longer than read_batch's HEAD_MAX: the same bound, never read further
        "oversize head": (json.dumps(dict(HEAD, pad="x" * 1100)) + "\n" + rec, "no head line"),
        "no line break at all": (json.dumps(dict(HEAD, pad="y" * 5000)), "no head line"),
    }
    for name, (text, said) in cases.items():
        d = _dir("removed")
        spool = Spool(d + "/spool")
        kept = spool.put(b"kept")
        if name == "garbage head":
            with open(d + "/spool/" + STAGED, "wb") as f:       # bytes no text decoder takes either
                f.write(text.encode()[:2] + b"\xff\xfe" + text.encode()[2:])
        else:
            _stage(d, text)
        spool, log = _start(d)
        assert not _staged_left(d), name
        assert spool.ids() == [kept], (name, spool.ids())
        assert said in log and len(log.split("\n")) == 1, (name, log)
        assert spool.put(b"next") == kept + 1, name
    rmtree(d)


def test_other_tmp_files_stay_deleted_and_only_the_staged_one_is_kept():
    d = _dir("others")
    _stage(d, _lines(HEAD, _record(1)))
    for name in ("0000000007.tmp", "last.tmp", "epoch.tmp"):
        with open(d + "/spool/" + name, "w") as f:
            f.write(_lines(HEAD, _record(2)))      # records or not: a write that never became a batch
    spool, _ = _start(d)
    assert sorted(os.listdir(d + "/spool")) == ["0000000001-1.b", "epoch"], os.listdir(d + "/spool")
    rmtree(d)


def test_a_rename_the_flash_refuses_is_logged_and_the_next_start_adopts():
    d = _dir("refused")
    _stage(d, _lines(HEAD, _record(1), _record(2)))
    for errno in (port.EIO, port.ENOSPC):     # ENOSPC with nothing to evict: refused the same
        port.set_flash_fault(lambda op, path, errno=errno: errno if op == "rename" and path.endswith(".b") else 0)
        try:
            spool, log = _start(d)
        finally:
            port.set_flash_fault(None)
        assert len(spool) == 0 and _staged_left(d)
        assert log.startswith("W spool: 2 staged records not recovered yet, left staged: OSError(%d" % errno), log
        meanwhile = spool.put(b"meanwhile")     # the box goes on
        spool.ack(meanwhile)
    spool, log = _start(d)    # the flash works again
    assert spool.ids() == [meanwhile + 1] and not _staged_left(d) and "recovered 2 records" in log, log
    rmtree(d)


def test_a_full_flash_evicts_for_the_adopted_batch_as_for_any_other():
    d = _dir("full")
    spool = Spool(d + "/spool")
    bulk = spool.put(b"bulk", BULK)
    alerts = spool.put(b"alerts", ALERTS)
    _stage(d, _lines(HEAD, _record(1)))
    once = [True]

    def full_once(op, path):
        if op == "rename" and path.endswith(".b") and once[0]:
            once[0] = False
            return port.ENOSPC
        return 0
    port.set_flash_fault(full_once)
    try:
        spool, log = _start(d)
    finally:
        port.set_flash_fault(None)
    assert spool.ids() == [alerts, alerts + 1] and spool.evicted_ids == [bulk], (spool.ids(), spool.evicted_ids)
    rmtree(d)


def test_an_unreadable_staged_file_waits_and_an_oversized_one_is_removed():
    d = _dir("unreadable")
    _stage(d, _lines(HEAD, _record(1)))
    port.set_flash_fault(lambda op, path: port.EIO if op == "read" and path.endswith(STAGED) else 0)
    try:
        spool, log = _start(d)
    finally:
        port.set_flash_fault(None)
    assert len(spool) == 0 and _staged_left(d)      # a failing read says nothing of its records
    assert log.startswith("W spool: staged batch not recovered yet, left staged: OSError(5") and "\n" not in log, log
    spool, log = _start(d)
    assert spool.ids() == [1] and "recovered 1 records" in log, log
    # larger than the spool may hold: it could only push every other batch out
    _stage(d, _lines(HEAD, *[_record(i, 500) for i in range(8)]))
    spool, log = _start(d, max_bytes=4096)
    assert spool.ids() == [1] and not _staged_left(d)
    assert log.startswith("W spool: staged batch unusable, removed: ValueError(") and "more than the spool" in log, log
    rmtree(d)


def test_a_record_line_longer_than_the_parse_bound_is_judged_by_its_shape():
    d = _dir("long")
    big = _record(1, STAGED_LINE_MAX * 2)
    # a long record cut by a refused write, then the next record on a line of its own
    cut_long = json.dumps(_record(2, STAGED_LINE_MAX + 10))[:STAGED_LINE_MAX + 100] + "\n"
    _stage(d, _lines(HEAD) + cut_long + _lines(big, _record(3)) + json.dumps(_record(4, STAGED_LINE_MAX * 3))[:-1])
    spool, log = _start(d)
    assert "recovered 2 records" in log and "2 cut line(s)" in log, log
    with LogCapture():
        assert spool.peek(read_batch) == (1, dict(HEAD, records=[big, _record(3)]))
    rmtree(d)


def test_with_commit_ms_0_each_staged_record_is_on_flash_when_add_returns():
    # LittleFS keeps only what a file's last commit held: a record not committed is gone at a cut
    d = _dir("sync")
    spool = Spool(d + "/spool")
    staged = BatchFile(spool.staged, lambda: dict(HEAD), commit_ms=0)
    for i in range(3):
        staged.add(_record(i))
        with open(spool.staged) as f:       # another reader, as the next start's spool would be
            lines = f.read().split("\n")
        assert [json.loads(line) for line in lines[:-1]] == [HEAD] + [_record(j) for j in range(i + 1)], i
        assert lines[-1] == "", i
    staged._close()      # the power goes: the spool's next start takes the batch
    spool, _ = _start(d)
    with LogCapture():
        assert spool.peek(read_batch) == (1, dict(HEAD, records=[_record(i) for i in range(3)]))
    rmtree(d)


def test_a_record_is_committed_once_the_staged_batch_went_commit_ms_without_a_commit():
    # a batch whose records come quickly costs the flash no commit; a slow one one per COMMIT_MS
    d = _dir("commit")
    clock, commits = [1000], []
    ticks_ms, sync_write = port.ticks_ms, port.sync_write
    port.ticks_ms = lambda: clock[0]
    port.sync_write = lambda f, path: commits.append(clock[0]) or sync_write(f, path)
    try:
        assert BatchFile(d + "/x", lambda: dict(HEAD)).commit_ms == batchfile.COMMIT_MS == 20000
        staged = BatchFile(d + "/batch.tmp", lambda: dict(HEAD), commit_ms=5000)
        for at in (1000, 3000, 5999, 6000, 6500, 10999, 11000, 30000):     # the head is written at 1000
            clock[0] = at
            staged.add(_record(at))
        assert commits == [6000, 11000, 30000], commits
        staged._close()
    finally:
        port.ticks_ms, port.sync_write = ticks_ms, sync_write
    with open(d + "/batch.tmp") as f:
        assert len(f.read().split("\n")) == 10       # head, 8 records, the last line break
    rmtree(d)


def test_device_memory_takes_back_what_a_recovered_record_says():
    # the sweep that made the record was cut before device memory was saved
    mem = devstate.DeviceState()
    mem.update("@10.0.0.1", seen=1, q=2, qs=1, pw="on")
    mem.update("S1", c={"total": 40}, t=1700000000)
    rec = dict(_record(1), first_seen=1600000000, mac="02:00:00:00:00:01", counters={"total": 50, "odd": 3},
               status={"power": "sleep"})
    mem.recall(rec)
    assert mem.get("S1") == {"c": {"total": 50}, "t": rec["collected_at"], "f": 1600000000}, mem.get("S1")
    assert mem.was_seen("10.0.0.1") and not mem.quiet("10.0.0.1")          # answered: no backoff left
    assert mem.last_identity("10.0.0.1") == ("S1", "02:00:00:00:00:01")
    assert mem.fell_silent("10.0.0.1") == "asleep"       # silent next sweep: reported as last seen
    # an older reading changes neither the counters kept nor when the box first collected it
    mem.recall(dict(rec, collected_at=1, first_seen=1500000000, counters={"total": 1}))
    assert mem.get("S1") == {"c": {"total": 50}, "t": rec["collected_at"], "f": 1600000000}, mem.get("S1")
    # a record without an address or with odd fields is passed over
    mem.recall({"serial": "S9"})
    mem.recall({"ip": "10.0.0.9", "first_seen": "yesterday", "counters": [1], "collected_at": None})
    assert mem.get("S9") == {} and mem.get("@10.0.0.9").get("f") is None


def test_the_box_starts_with_the_recovered_batch_queued_and_its_devices_remembered():
    from test_cycle_errors import Box
    recs = [dict(_record(i), first_seen=1600000000 + i, counters={"total": 10 + i}) for i in (1, 2)]

    def cut_mid_sweep(d):
        os.mkdir(d + "/spool")
        _stage(d, _lines({"scan": "full", "cycle": 1700000000}, *recs) + '{"ip": "10.0.0.3", "se')

    with LogCapture(port.INFO) as log:
        box = Box("recovered", {}, 1, cut_mid_sweep)
    mem = box.app.devices
    assert "recovered 2 records an interrupted sweep staged as batch 1" in log.text(), log.text()
    assert [mem.get("S%d" % i).get("f") for i in (1, 2)] == [1600000001, 1600000002]
    assert mem.was_seen("10.0.0.2") and not mem.dirty       # saved: another cut keeps it
    box.run()
    # the recovered batch goes up before the cycle's own, under the next id; nothing is left
    assert box.uploads == [1, 1] and len(box.app.spool) == 0, box.uploads
    assert box.app.uplink.stats["sent"] == 2


def test_the_documented_vector():
    # docs/uplink.md "Batch files", Vector (staged): a spool holding batches 4 and 5, spool/last 5
    d = _dir("vector")
    os.mkdir(d + "/spool")
    for name in ("0000000004-0.b", "0000000005-0.b"):
        with open(d + "/spool/" + name, "w") as f:
            f.write('{"scan": "full", "cycle": 1, "records": []}')
    with open(d + "/spool/last", "w") as f:
        f.write("5")
    text = ('{"scan": "counters", "cycle": 7}\n{"ip": "10.0.0.1", "collected_at": 7, "uptime_s": 3}\n'
            '{"ip": "10.0.0.2", "collected_at": 7, "uptime_s": 4}\n{"ip": "10.0.0.3", "col')
    _stage(d, text)
    spool, log = _start(d)
    assert log == "W spool: recovered 2 records an interrupted sweep staged as batch 6, 1 cut line(s) skipped", log
    assert sorted(n for n in os.listdir(d + "/spool") if n.endswith(".b")) == [
        "0000000004-0.b", "0000000005-0.b", "0000000006-1.b"]
    spool.ack(4)
    spool.ack(5)
    with LogCapture():
        assert spool.peek(read_batch) == (6, {"scan": "counters", "cycle": 7, "records": [
            {"ip": "10.0.0.1", "collected_at": 7, "uptime_s": 3},
            {"ip": "10.0.0.2", "collected_at": 7, "uptime_s": 4}]})
    assert spool.put(b"next") == 7
    _stage(d, text[:text.index("\n") + 1])
    spool, log = _start(d)
    assert not _staged_left(d) and spool.ids() == [6, 7], log
    rmtree(d)


def test_a_sweep_adopts_what_the_last_one_left_staged_and_warns_when_it_cannot():
    from test_cycle_errors import Box
    # cycle 1's batch is refused at its end (its record stays staged); cycle 2's sweep tries to
    # adopt it first and the flash refuses again: staged over, with a warning; cycle 3 is clean
    box = Box("twice", {1: "spool"}, 3)
    wait = box.app.wait

    def refuse_once(path, klass=0):
        del box.app.spool.put_file
        raise OSError(port.EIO)

    async def wait_then_refuse(seconds):
        if box.app.cycle == 1:
            box.app.spool.put_file = refuse_once
        await wait(seconds)
    box.app.wait = wait_then_refuse
    with LogCapture(port.INFO) as log:
        box.run()
    text = log.text()
    assert "W spool: 1 staged records not recovered yet, left staged: OSError(5" in text, text
    assert "W main: staged records overwritten: the flash refused their batch twice" in text, text
    assert box.uploads == [2, 3] and len(box.app.spool) == 0, box.uploads
