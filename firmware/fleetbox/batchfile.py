"""A sweep's records on flash as they are made, one line each; the file becomes a spool batch.

The staging file (`spool.STAGED`, in the spool's folder) starts with the batch's head
(scan, cycle, h) on a line of its own; each record the collector hands over is appended
(json.dump streams it) as one more line. When the batch is complete the spool takes the file
as it is, by a rename (`Spool.put_file`): the heap never holds more than the record being
written. The format is docs/uplink.md "Batch files".

A write the flash refuses (ENOSPC, EIO) costs only the record being written: its line may
be left cut, the next record starts on a line of its own after it, and a cut line is
skipped (and counted) when the batch is read (`spool.read_batch`).

LittleFS keeps of a file only what its last commit (`port.sync_write`, or the close)
held, so a power cut, reset or crash keeps the staged records up to the last commit; the
spool adopts them as a batch when it starts (`Spool.adopt_staged`). A record is committed
when the staged batch has gone COMMIT_MS without a commit: a cut loses at most the records of
the last COMMIT_MS, and a batch whose 8 records come within it (a site of printers that
answer) costs the flash no more than without commits. A commit after every record
(commit_ms 0) costs 2.4 times the block erases of staging (`bench/uplink/staged_wear.py`:
12.57 against 5.21 per 8-record batch), which at 20 printers scanned every 5 minutes is the
difference between about 5.6 and 13.5 years of 100,000-cycle flash.
"""
import json

from fleetbox import port
from fleetbox.atomicfile import remove_quietly

COMMIT_MS = 20000   # not a const(): a test sets it to commit every record


class BatchFile:
    """Records appended one by one (`add`), then handed to the spool whole (`finish`).

    `head()`: the batch's fields other than its records ({"scan", "cycle", "h"}), asked
    when a batch's first record is written. `commit_ms`: the longest a written record waits
    for its commit to flash (COMMIT_MS when None; 0: each record before `add` returns)."""

    def __init__(self, path, head, commit_ms=None):
        self.path = path
        self.head = head
        self.commit_ms = COMMIT_MS if commit_ms is None else commit_ms
        self._committed = 0     # ticks of the last commit (or of the head's write)
        self.count = 0      # records of this batch: written, or lost to the flash
        self.lost = 0       # of which the flash refused
        self._f = None
        self._begun = False     # the head line is on flash
        self._torn = False      # the last line may be cut: the next one starts after a line break

    def _open(self):
        if self._f is None:
            if self._begun:
                self._f = port.open_append(self.path, False)
            else:
                self._f = port.open_write(self.path)
                self._torn = False
                port.flash_stream(self._f, self.path).write(json.dumps(self.head()) + "\n")
                self._begun = True
                self._committed = port.ticks_ms()
        return port.flash_stream(self._f, self.path)

    def add(self, rec):
        """Append one record. OSError (or MemoryError) when it could not be written whole: that
        record is lost, the ones before and after it are not."""
        self.count += 1
        try:
            out = self._open()
            if self._torn:
                out.write("\n")     # end the cut line: it is skipped when the batch is read
                self._torn = False
            json.dump(rec, out)
            out.write("\n")
            now = port.ticks_ms()
            if port.ticks_diff(now, self._committed) >= self.commit_ms:
                port.sync_write(self._f, self.path)    # on flash: a power cut from now on keeps it
                self._committed = now
        except BaseException:
            self.lost += 1
            self._torn = True
            self._close()
            raise

    def _close(self):
        if self._f is not None:
            f, self._f = self._f, None
            try:
                f.close()
            except OSError:
                pass

    def finish(self, spool, klass):
        """Hand the batch to `spool` (a rename); returns its id (None: the flash took none of its
        records). OSError when the flash refuses:
        the records stay staged and the next batch takes them along."""
        if self._f is not None:
            f, self._f = self._f, None
            try:
                port.close_write(f, self.path)
            except OSError:
                self._torn = True   # the last line may not have reached the flash whole
                raise
        if not self._begun:
            self.count = self.lost = 0     # every record was refused: no batch to hand over
            return None
        ident = spool.put_file(self.path, klass)
        self._begun = self._torn = False
        self.count = self.lost = 0
        return ident

    def drop(self):
        """Forget the records staged so far."""
        self._close()
        remove_quietly(self.path)
        self._begun = self._torn = False
        self.count = self.lost = 0
