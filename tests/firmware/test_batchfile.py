"""Records staged on flash as they are made (fleetbox.batchfile), a line each, then renamed
into the spool: read back they are the batch built in RAM; a write the flash refuses in the
middle of a record costs that record only, whichever record of the batch it hits; a batch
the spool refuses stays staged for the next. Both runtimes (the flash faults through
port.set_flash_fault, as the sim board's flash switch)."""
import json
import os

from check import LogCapture, fresh_dir, raises, tmp
from fleetbox import port
from fleetbox.batchfile import BatchFile
from fleetbox.spool import BULK, Spool, read_batch

HEAD = {"scan": "full", "cycle": 1700000000, "h": {"upload": 1}}


def _records(n, start=0):
    # long descriptions with characters of 2 and 3 bytes, and a line break inside a string
    return [{"ip": "10.0.0.%d" % (start + i), "serial": "S%d" % (start + i), "collected_at": 1700000000 + i,
             "uptime_s": None, "supplies": [{"description": ("Tóner négro €\n" * 60)[:700 + i]}]} for i in range(n)]


def _staged(name):
    d = fresh_dir(tmp("fb-batchfile-") + name)
    spool = Spool(d + "/spool")
    return d, spool, BatchFile(d + "/spool/batch.tmp", lambda: dict(HEAD))


def _peek(spool):
    with LogCapture() as log:
        got = spool.peek(read_batch)
    return got, log.text()


def test_a_staged_batch_is_the_batch_built_in_ram_and_renamed_not_copied():
    d, spool, staged = _staged("same")
    recs = _records(3)
    for r in recs:
        staged.add(r)
    assert staged.count == 3
    ident = staged.finish(spool, BULK)
    assert "batch.tmp" not in os.listdir(d + "/spool")
    with open(spool._file(ident)) as f:
        lines = f.read().split("\n")
    # a head line, a line per record
    assert len(lines) == 5 and lines[-1] == "" and json.loads(lines[0]) == HEAD
    (got, _), = [_peek(spool)]
    assert got == (ident, dict(HEAD, records=recs))
    assert staged.count == 0
    # the next batch starts afresh, with its own head
    staged.add(recs[0])
    ident2 = staged.finish(spool, BULK)
    spool.ack(ident)
    assert _peek(spool)[0] == (ident2, dict(HEAD, records=recs[:1]))


def _cut_at(staged, nth, errno):
    """A flash fault failing the 3rd write of the batch's nth record: a few pieces of it are
    on flash, then it fails."""
    writes = [0]

    def fault(op, path):
        if op == "write" and staged.count == nth:
            writes[0] += 1
            if writes[0] == 3:
                return errno
        return 0
    return fault


def test_a_write_failing_at_any_record_loses_that_record_only():
    recs = _records(8)
    for bad in range(8):
        for errno in (port.ENOSPC, port.EIO):
            d, spool, staged = _staged("cut%d" % bad)
            fault = _cut_at(staged, bad + 1, errno)
            for i, r in enumerate(recs):
                port.set_flash_fault(fault)
                try:
                    if i == bad:
                        assert raises(OSError, staged.add, r).args[0] == errno
                    else:
                        staged.add(r)
                finally:
                    port.set_flash_fault(None)
            assert staged.count == 8 and staged.lost == 1
            ident = staged.finish(spool, BULK)
            got, log = _peek(spool)
            assert got == (ident, dict(HEAD, records=recs[:bad] + recs[bad + 1:])), bad
            assert "1 record line(s) cut by a failed write" in log, log


def test_a_flash_that_refuses_the_staging_file_loses_those_records_only():
    d, spool, staged = _staged("open")
    recs = _records(4)
    staged.add(recs[0])
    for i, op in ((1, "write"), (2, "open")):   # the second reopens the file after the cut
        port.set_flash_fault(lambda o, p, op=op: port.ENOSPC if o == op else 0)
        try:
            raises(OSError, staged.add, recs[i])
        finally:
            port.set_flash_fault(None)
    staged.add(recs[3])          # the flash is back: staging goes on after the cut
    ident = staged.finish(spool, BULK)
    assert _peek(spool)[0] == (ident, dict(HEAD, records=[recs[0], recs[3]]))
    # every record of a batch refused: nothing to hand over
    port.set_flash_fault(lambda op, p: port.EIO if op == "open" else 0)
    try:
        raises(OSError, staged.add, recs[3])
    finally:
        port.set_flash_fault(None)
    assert staged.finish(spool, BULK) is None and len(spool) == 1 and staged.count == 0


def test_a_batch_the_spool_refuses_stays_and_the_next_takes_it_along():
    d, spool, staged = _staged("refused")
    first = _records(2)
    for r in first:
        staged.add(r)
    port.set_flash_fault(lambda op, path: port.EIO if op == "rename" else 0)
    try:
        raises(OSError, staged.finish, spool, BULK)
    finally:
        port.set_flash_fault(None)
    assert len(spool) == 0 and staged.count == 2
    more = _records(1, 5)
    staged.add(more[0])
    ident = staged.finish(spool, BULK)
    assert _peek(spool)[0] == (ident, dict(HEAD, records=first + more))


def test_a_full_flash_at_the_rename_evicts_as_put_does():
    d, spool, staged = _staged("full")
    old = spool.put(json.dumps(dict(HEAD, records=[])))
    staged.add(_records(1)[0])
    failed = [False]

    def fault(op, path):
        if op == "rename" and not failed[0]:
            failed[0] = True
            return port.ENOSPC
        return 0
    port.set_flash_fault(fault)
    try:
        ident = staged.finish(spool, BULK)
    finally:
        port.set_flash_fault(None)
    assert spool.ids() == [ident] and spool.evicted_ids == [old]


def test_batches_of_either_format_read_back():
    d = fresh_dir(tmp("fb-batchfile-formats"))
    spool = Spool(d + "/spool")
    whole = dict(HEAD, records=_records(2))
    a = spool.put(json.dumps(whole))                  # one JSON object: earlier firmware, markers
    b = spool.put(json.dumps(HEAD) + "\n" + json.dumps(_records(1)[0]) + "\n")
    c = spool.put(json.dumps(HEAD) + "\n")            # a head and no record
    d_ = spool.put(json.dumps(HEAD) + "\n" + '{"ip": "10.0.0.1", "sup' + "\n\n" + json.dumps(_records(1)[0]) + "\n")
    assert _peek(spool)[0] == (a, whole)
    spool.ack(a)
    assert _peek(spool)[0] == (b, dict(HEAD, records=_records(1)))
    spool.ack(b)
    assert _peek(spool)[0] == (c, dict(HEAD, records=[]))
    spool.ack(c)
    got, log = _peek(spool)
    assert got == (d_, dict(HEAD, records=_records(1))) and "1 record line(s) cut" in log
    # a head line that is not a batch head: unreadable, dropped like any other
    spool.ack(d_)
    spool.put('{"records": []}\n')
    assert _peek(spool)[0] is None and spool.corrupt == 1


def test_the_documented_vector():
    # docs/uplink.md "Batch files"
    d = fresh_dir(tmp("fb-batchfile-vector"))
    spool = Spool(d + "/spool")
    ident = spool.put('{"scan": "full", "cycle": 7}\n{"ip": "10.0.0.1", "collected_at": 7, "uptime_s": 3}\n'
                      '{"ip": "10.0.0.2", "col\n{"ip": "10.0.0.3", "collected_at": 7, "uptime_s": 4}\n')
    got, log = _peek(spool)
    assert got == (ident, {"scan": "full", "cycle": 7, "records": [
        {"ip": "10.0.0.1", "collected_at": 7, "uptime_s": 3}, {"ip": "10.0.0.3", "collected_at": 7, "uptime_s": 4}]})
    assert "1 record line(s) cut" in log
