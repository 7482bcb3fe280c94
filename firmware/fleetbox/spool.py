"""Spool: a persistent FIFO of upload batches on the board's flash (LittleFS).

Every batch is written (to a temporary name, then renamed: atomic on LittleFS)
before anything tries to send it, and removed only after the cloud acknowledged it.
Names are zero-padded sequence numbers, so the order survives a reboot.
"""
import os

SUFFIX = ".b"


class Spool:
    def __init__(self, directory, max_items=256):
        self.dir = directory
        self.max_items = max_items
        try:
            os.mkdir(directory)
        except OSError:
            pass
        self._ids = sorted(int(n[:-2]) for n in os.listdir(directory) if n.endswith(SUFFIX) and n[:-2].isdigit())
        for n in os.listdir(directory):
            if n.endswith(".tmp"):
                # A write that a power cut interrupted never became part of the spool.
                os.remove(self._path(n))
        self.evicted = 0
        self._next = self._ids[-1] + 1 if self._ids else self._read_last() + 1

    def _read_last(self):
        try:
            with open(self._path("last")) as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def _path(self, name):
        return self.dir + "/" + name

    def _name(self, ident):
        return "%010d%s" % (ident, SUFFIX)

    def __len__(self):
        return len(self._ids)

    def put(self, data):
        """Store one batch; returns its id, unique for the life of the spool. Evicts the oldest when full."""
        ident = self._next
        self._next += 1
        tmp = self._path("%010d.tmp" % ident)
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, self._path(self._name(ident)))
        self._ids.append(ident)
        while len(self._ids) > self.max_items:
            self.ack(self._ids[0])
            self.evicted += 1
        return ident

    def peek(self):
        """(id, bytes) of the oldest batch, or None when empty."""
        while self._ids:
            ident = self._ids[0]
            try:
                with open(self._path(self._name(ident)), "rb") as f:
                    return ident, f.read()
            except OSError:
                self._ids.pop(0)
        return None

    def ack(self, ident):
        if self._ids == [ident]:
            # Ids must never repeat (the cloud dedups on them): remember the last before it goes.
            with open(self._path("last"), "w") as f:
                f.write(str(ident))
        try:
            os.remove(self._path(self._name(ident)))
        except OSError:
            pass
        if ident in self._ids:
            self._ids.remove(ident)
