"""A sweep's records on flash as they are made, one line each; the file becomes a spool batch.

The staging file (`spool.STAGED`, in the spool's folder) starts with the batch's head
(scan, cycle, h) on a line of its own; each record the collector hands over is appended
(json.dump streams it) as one more line and committed to flash (`port.sync_write`) before
`add` returns. When the batch is complete the spool takes the file as it is, by a rename
(`Spool.put_file`): the heap never holds more than the record being written. The format is
docs/uplink.md "Batch files".

A write the flash refuses (ENOSPC, EIO) costs only the record being written: its line may
be left cut, the next record starts on a line of its own after it, and a cut line is
skipped (and counted) when the batch is read (`spool.read_batch`). A power cut, reset or
crash leaves the file staged with every record `add` returned for (LittleFS keeps only
what a file's last commit held: hence the commit per record); the spool adopts it as a
batch when it starts (`Spool.adopt_staged`).
"""
import json

from fleetbox import port
from fleetbox.atomicfile import remove_quietly


class BatchFile:
    """Records appended one by one (`add`), then handed to the spool whole (`finish`).

    `head()`: the batch's fields other than its records ({"scan", "cycle", "h"}), asked
    when a batch's first record is written."""

    def __init__(self, path, head):
        self.path = path
        self.head = head
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
            port.sync_write(self._f, self.path)    # on flash before the sweep goes on: a power cut keeps it
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
