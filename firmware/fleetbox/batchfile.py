"""A sweep's records on flash as they are made, not in the heap while a batch fills.

Each record is written (json.dump streams it) to a staging file beside the spool the
moment the collector hands it over; when the batch is complete the spool copies the file
into a batch of its own ({"scan", "cycle", "records": [...]}, docs/uplink.md) through its
usual atomic write. The heap holds one record at a time and a 512-character chunk; the
flash writes each batch twice. The staging name ends in `.tmp`, so a power cut leaves
nothing the spool keeps (it deletes such files when it starts), as records held in RAM
would have been lost.
"""
import json

from fleetbox import port
from fleetbox.atomicfile import remove_quietly

COPY_CHARS = 512


class BatchFile:
    """Records appended one by one (`add`), then handed to the spool (`writer`, `drop`)."""

    def __init__(self, path):
        self.path = path
        self.count = 0
        self._f = None

    def add(self, rec):
        """Append one record. OSError when the flash refuses: the records written so far
        are dropped with the staging file (a record cut in two would spoil them all)."""
        try:
            if self._f is None:
                self._f = port.open_write(self.path, False)
                self.count = 0
            if self.count:
                self._f.write(",")
            json.dump(rec, self._f)
            self.count += 1
        except BaseException:
            self.drop()
            raise

    def writer(self, head):
        """A spool.put writer of the batch: the fields of `head` (a dict: scan, cycle ...),
        then the records written so far. The staging file stays open: drop() once the
        spool holds the batch; after a refusal the next records join these."""
        if self._f is not None:
            self._f.flush()

        def write(out):
            h = json.dumps(head)
            out.write(h[:-1])
            out.write(", \"records\": [" if len(h) > 2 else "\"records\": [")
            with open(self.path) as src:    # text: a character is never cut in two
                while True:
                    chunk = src.read(COPY_CHARS)
                    if not chunk:
                        break
                    out.write(chunk)
            out.write("]}")
        return write

    def drop(self):
        """Forget the records written so far (the spool holds them, or the flash failed)."""
        if self._f is not None:
            f, self._f = self._f, None
            try:
                f.close()
            except OSError:
                pass
        remove_quietly(self.path)
        self.count = 0
