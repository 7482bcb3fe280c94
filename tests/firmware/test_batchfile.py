"""Records staged on flash as they are made (fleetbox.batchfile), then copied into the
spool as one batch: the same JSON as a batch built in RAM, text crossing the copy's
chunks intact, a refused batch kept for the next, a failing flash dropping the staging
file. Both runtimes."""
import json
import os

from check import fresh_dir, raises
from fleetbox import port
from fleetbox.batchfile import COPY_CHARS, BatchFile
from fleetbox.spool import Spool


def _records(n, start=0):
    # a description crossing the copy's 512-character chunks with characters of 2 and 3 bytes
    return [{"ip": "10.0.0.%d" % (start + i), "serial": "S%d" % (start + i),
             "supplies": [{"description": ("Tóner négro €" * 60)[:COPY_CHARS + i]}]} for i in range(n)]


def _batch(spool, ident):
    with open(spool._file(ident)) as f:
        return json.load(f)


def test_a_staged_batch_is_the_batch_built_in_ram():
    d = fresh_dir("/tmp/fb-batchfile-same")
    spool = Spool(d + "/spool")
    staged = BatchFile(d + "/spool/batch.tmp")
    recs = _records(3)
    for r in recs:
        staged.add(r)
    assert staged.count == 3
    head = {"scan": "full", "cycle": 1700000000, "h": {"upload": 1}}
    ident = spool.put(staged.writer(head))
    staged.drop()
    assert _batch(spool, ident) == {"scan": "full", "cycle": 1700000000, "h": {"upload": 1}, "records": recs}
    assert staged.count == 0 and "batch.tmp" not in os.listdir(d + "/spool")
    # the next batch starts afresh
    staged.add(recs[0])
    ident = spool.put(staged.writer({"scan": "full", "cycle": 2}))
    staged.drop()
    assert _batch(spool, ident)["records"] == recs[:1]


def test_a_batch_the_spool_refuses_stays_and_the_next_takes_it_along():
    d = fresh_dir("/tmp/fb-batchfile-refused")
    spool = Spool(d + "/spool")
    staged = BatchFile(d + "/spool/batch.tmp")
    first = _records(2)
    for r in first:
        staged.add(r)
    port.set_flash_fault(lambda op, path: port.EIO if op == "rename" else 0)
    try:
        raises(OSError, spool.put, staged.writer({"scan": "full", "cycle": 1}))
    finally:
        port.set_flash_fault(None)
    assert len(spool) == 0 and staged.count == 2
    more = _records(1, 5)
    staged.add(more[0])
    ident = spool.put(staged.writer({"scan": "full", "cycle": 1}))
    staged.drop()
    assert _batch(spool, ident)["records"] == first + more


def test_a_flash_that_refuses_the_staging_file_drops_it():
    d = fresh_dir("/tmp/fb-batchfile-fault")
    path = d + "/batch.tmp"
    staged = BatchFile(path)
    port.set_flash_fault(lambda op, p: port.ENOSPC if op == "open" else 0)
    try:
        raises(OSError, staged.add, _records(1)[0])
    finally:
        port.set_flash_fault(None)
    assert staged.count == 0 and "batch.tmp" not in os.listdir(d)
    staged.add(_records(1)[0])      # the flash is back: staging goes on
    assert staged.count == 1
    staged.drop()
