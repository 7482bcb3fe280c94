"""Spool: a persistent, bounded queue of upload batches on the board's flash (LittleFS).

Every batch is written to a temporary name and then renamed (atomic on LittleFS and
POSIX) before anything tries to send it, and removed only after the cloud
acknowledged it, so a power cut at any instant loses nothing that `put` returned.
Names are `<id, 10 digits>-<class>.b`: the id orders the queue across reboots and is
never reused (the cloud dedups on it); the class ranks batches for eviction.

Eviction (when more than max_items batches or max_bytes bytes are held): the batch
with the lowest rank goes first, the oldest among equals. Ranks: BULK (full and
other inventory scans) 0, COUNTERS 1, ALERTS 2, and the newest COUNTERS batch 3:
alerts and the latest counters go last. docs/uplink.md has the whole policy.

A batch on flash is either lines (a head line, then one record per line: what
fleetbox.batchfile stages and `put_file` adopts by a rename) or one JSON object; both read
back through `read_batch` (docs/uplink.md "Batch files").

The staging file (`STAGED`, beside the batches) is the spool's too: at start, whatever an
interrupted sweep left there (power cut, reset, crash, a rename the flash refused) becomes a
batch like any other when it holds a record (`adopt_staged`). The spool decides it, not the
box's start-up: the spool already clears its folder's other `.tmp` files (writes that never
became batches), and keeping or deleting is one decision about one folder.

A batch read back must have the shape the uplink encodes ({"scan", "cycle", "records":
[{...}]}); one that does not (flash corruption that still parses, an older format) is
dropped with a log like an unreadable one: at the head of the queue it would stop every
drain, on every boot.
"""
import json
import os

from fleetbox.atomicfile import atomic_write, remove_quietly as _remove
from fleetbox import port
from fleetbox.port import INFO, WARN, listdir, log, urandom

SUFFIX = ".b"
BULK, COUNTERS, ALERTS = 0, 1, 2
_LATEST_COUNTERS = 3
ENOSPC = 28
# Default bound of the spool's bytes: the smallest data partition (esp32-poe, 736 KiB of
# 4 KiB blocks) holds it with room for LittleFS's copy-on-write, config and uplink state.
DEFAULT_MAX_BYTES = 384 * 1024
STAGED = "batch.tmp"    # the sweep's staging file (fleetbox.batchfile), in the spool's folder
# characters of a staged record line parsed at start; a longer one is judged by its shape
# (a "{" first, "}" last): the check holds no more than this in RAM whatever the file holds
STAGED_LINE_MAX = 8192
_MAX_DEPTH = 24     # containers nested in a record (CBOR refuses beyond 32 with the envelope's own)
# A put that meets a full flash evicts until it has freed this much; past it the flash is
# failing rather than full of batches, and evicting more would only lose them.
FULL_EVICT_BYTES = 64 * 1024


def scan_class(scan):
    """The class a batch of the scan kind `scan` is spooled as."""
    return COUNTERS if scan == "counters" else ALERTS if scan == "alerts" else BULK


def _parse(name):
    """(id, class) of a batch file name, or None for any other file."""
    if not name.endswith(SUFFIX):
        return None
    stem = name[:-len(SUFFIX)]
    ident, _, klass = stem.partition("-")
    if not (ident.isdigit() and klass.isdigit()):
        return None
    return int(ident), int(klass)


HEAD_MAX = 1024     # characters of a line-format batch's head line, at most


def _batch_head(line):
    """The fields of a line-format batch's head line (every field but its records)."""
    head = json.loads(line)
    if not isinstance(head, dict) or "records" in head:
        raise ValueError("not a batch head")
    return head


def read_batch(f):
    """The batch a spool file (open in text mode) holds, in either format: a head line and a
    record per line, a line that does not parse as an object (cut by a failed write) skipped
    and counted in "cut"; or one JSON object (earlier firmware, and batches put whole).
    ValueError when unreadable."""
    head = f.readline(HEAD_MAX)
    if not head.endswith("\n"):
        f.seek(0)       # one JSON object (no line break in it): streamed, not read whole
        return json.load(f)
    batch = _batch_head(head)
    records = batch["records"] = []
    cut = 0
    while True:
        line = f.readline()
        if not line:
            break
        if line == "\n":
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if isinstance(rec, dict):
            records.append(rec)
        else:
            cut += 1
    if cut:
        batch["cut"] = cut
    return batch


def staged_records(f, each=None):
    """(head, records, cut) of a staging file open in text mode: its head line (as
    `read_batch` reads it, ValueError when it is not a batch head) and how many lines after it
    are records and how many are not (cut by a failed write or the power). Line by line,
    holding at most STAGED_LINE_MAX characters: the file may be anything a fault left.
    `each(record)` is called with every record that fits that bound."""
    line = f.readline(HEAD_MAX)
    if not line.endswith("\n"):
        raise ValueError("no head line")
    head = _batch_head(line)
    head["records"] = []
    problem = batch_problem(head)
    if problem:
        raise ValueError(problem)
    del head["records"]
    records = cut = 0
    while True:
        line = f.readline(STAGED_LINE_MAX)
        if not line:
            break
        if line == "\n":
            continue
        if line.endswith("\n"):
            try:
                line = json.loads(line)
            except ValueError:
                pass
            ok = isinstance(line, dict)
            if ok and each is not None:
                each(line)
            line = None
        else:
            # longer than the bound, or cut by the power at the end of the file
            ok = line[0] == "{"
            tail = line[-1:]
            while True:
                line = f.readline(STAGED_LINE_MAX)
                if not line:
                    ok = False      # no line break: the write never finished
                    break
                tail = tail[-1:] + line[-2:]
                if line.endswith("\n"):
                    ok = ok and tail.endswith("}\n")
                    break
        if ok:
            records += 1
        else:
            cut += 1
    return head, records, cut


def batch_problem(batch):
    """Why `batch` (as read back from flash) cannot be encoded for upload, or None."""
    if not isinstance(batch, dict):
        return "not an object"
    if not isinstance(batch.get("scan"), (str, type(None))):
        return "scan is not a string"
    if not _number_or_none(batch.get("cycle")):
        return "cycle is not a number"
    records = batch.get("records")
    if not isinstance(records, list):
        return "records is not a list"
    for rec in records:
        if not isinstance(rec, dict):
            return "a record is not an object"
        if not (_number_or_none(rec.get("collected_at")) and _number_or_none(rec.get("uptime_s"))):
            return "a record's clock is not a number"
        if _too_deep(rec):
            return "a record nests deeper than %d" % _MAX_DEPTH
    return None


def _number_or_none(v):
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _too_deep(value):
    # Iterative: a hostile nesting must not exhaust MicroPython's small C stack either.
    level = [value]
    for _ in range(_MAX_DEPTH):
        nxt = []
        for v in level:
            if isinstance(v, dict):
                nxt.extend(v.values())
            elif isinstance(v, list):
                nxt.extend(v)
        if not nxt:
            return False
        level = nxt
    return any(isinstance(v, (dict, list)) for v in level)


class Spool:
    def __init__(self, directory, max_items=256, max_bytes=None):
        """max_bytes None: DEFAULT_MAX_BYTES (a spool is never unbounded: the flash is not)."""
        self.dir = directory
        self.max_items = max_items
        self.max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
        try:
            os.mkdir(directory)
        except OSError:
            pass
        self._class = {}   # id -> class
        self._size = {}    # id -> bytes on flash
        for name in listdir(directory):
            parsed = _parse(name)
            if parsed:
                self._class[parsed[0]] = parsed[1]
                self._size[parsed[0]] = os.stat(self._path(name))[6]
            elif name.endswith(".tmp") and name != STAGED:
                # A write that a power cut interrupted never became part of the spool.
                _remove(self._path(name))
        self._ids = sorted(self._class)
        self.bytes = sum(self._size.values())
        self.evicted = 0
        self.corrupt = 0
        self.evicted_ids = []
        self._unnoted = None    # the newest id evicted while the flash was too full to note it
        self._next = max(self._ids[-1] if self._ids else 0, self._read_last()) + 1
        self.epoch = self._epoch()
        self.staged = self._path(STAGED)
        self.recovered = self.adopt_staged()     # the id of what an interrupted sweep left, or None

    def _epoch(self):
        """A random number born with this spool: after a wiped data partition upload ids restart,
        and the epoch tells the cloud they are new uploads, not retries (docs/payload.md)."""
        try:
            with open(self._path("epoch")) as f:
                e = int(f.read())
            if 0 < e < 65536:
                return e
        except (OSError, ValueError):
            pass
        e = 0
        while not e:
            e = int.from_bytes(urandom(2), "big")
        try:
            atomic_write(self._path("epoch"), str(e))
        except OSError as err:
            # flash full or failing: this boot's epoch still serves; the next boot draws again
            log("spool", WARN, "epoch not saved: %r" % err)
        return e

    def _read_last(self):
        try:
            with open(self._path("last")) as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def _path(self, name):
        return self.dir + "/" + name

    def _file(self, ident):
        return self._path("%010d-%d%s" % (ident, self._class[ident], SUFFIX))

    def path_of(self, ident):
        """The file of batch `ident` (held by the spool)."""
        return self._file(ident)

    def __len__(self):
        return len(self._ids)

    def ids(self):
        return list(self._ids)

    def put(self, data, klass=BULK):
        """Store one batch; returns its id, unique for the life of the spool. Evicts when over bounds.

        data: bytes, str, or a callable that writes the batch to the file it is given (so a big
        batch is streamed to flash, never built whole in a fragmented heap)."""
        if isinstance(data, str):
            data = data.encode()
        return self._store(klass, lambda ident: atomic_write(self._file(ident), data, self._path("%010d.tmp" % ident)))

    def put_file(self, path, klass=BULK):
        """Store the finished batch file at `path` (a line-format batch, fleetbox.batchfile) by
        renaming it into the spool: written once, never copied. Returns its id, as put."""
        def adopt(ident):
            port.rename(path, self._file(ident))
            return os.stat(self._file(ident))[6]
        return self._store(klass, adopt)

    def adopt_staged(self):
        """Take what an interrupted sweep staged (`STAGED`) as a batch: a fresh id, the class of
        its head's scan, eviction as for put_file. Returns its id; None when nothing was staged,
        or nothing worth keeping (a head line that is no batch head, longer than HEAD_MAX or
        without its line break; no complete record; a file larger than the spool may hold):
        then the file is removed. A read or rename the flash refuses leaves it staged for the
        next try (the next start, or the next sweep before it stages). Never raises: a fault
        here must not stop the box from starting, on every start."""
        path = self.staged
        try:
            size = os.stat(path)[6]
        except OSError:
            return None     # nothing staged
        try:
            return self._adopt(path, size)
        except OSError as e:
            # the flash failed to read it (or to rename it): nothing says the records are gone
            log("spool", WARN, "staged batch not recovered yet, left staged: %r" % e)
            return None
        except Exception as e:  # noqa: BLE001  (whatever it is, the box starts without the file)
            log("spool", WARN, "staged batch unusable, removed: %r" % e)
            _remove(path)
            return None

    def _adopt(self, path, size):
        if size > self.max_bytes:
            raise ValueError("%d bytes, more than the spool holds" % size)
        try:
            with port.open_read(path) as f:
                head, records, cut = staged_records(f)
        except ValueError as e:     # no head line, or a damaged one: nothing says what the lines are
            log("spool", WARN, "staged batch removed: %s" % e)
            _remove(path)
            return None
        if not records:
            log("spool", INFO if not cut else WARN, "staged batch holds no complete record (%d cut), removed" % cut)
            _remove(path)
            return None
        try:
            ident = self.put_file(path, scan_class(head.get("scan")))
        except OSError as e:
            log("spool", WARN, "%d staged records not recovered yet, left staged: %r" % (records, e))
            return None
        log("spool", WARN if cut else INFO, "recovered %d records an interrupted sweep staged as batch %d%s"
            % (records, ident, ", %d cut line(s) skipped" % cut if cut else ""))
        return ident

    def _store(self, klass, write):
        ident = self._next
        self._next += 1
        self._class[ident] = klass
        freed = 0
        while True:
            try:
                size = write(ident)
                break
            except OSError as e:
                # Flash full (ENOSPC): make room by the eviction order, as if over max_bytes.
                if e.args[0] != ENOSPC or not self._ids or freed >= FULL_EVICT_BYTES:
                    del self._class[ident]
                    raise
                victim = self._victim()
                freed += self._size[victim]
                self._evict(victim)
        self._unnoted = None    # a newer id is on flash now
        self._ids.append(ident)
        self._size[ident] = size
        self.bytes += size
        while len(self._ids) > 1 and (len(self._ids) > self.max_items or self.bytes > self.max_bytes):
            self._evict(self._victim())
        return ident

    def _evict(self, victim):
        try:
            self.ack(victim)
        except OSError as e:
            if e.args[0] != ENOSPC:
                raise
            # Too full even to note the newest id: free its batch first, note it in the room it
            # leaves. Still full (a flash that fails every write): keep it to note at the next ack,
            # the next put's batch carries a newer id anyway.
            _remove(self._file(victim))
            self._forget(victim)
            try:
                self._note_last(victim)
            except OSError as e:
                log("spool", WARN, "evicted batch %d's id not noted yet: %r" % (victim, e))
                self._unnoted = victim
        self.evicted += 1
        self.evicted_ids.append(victim)
        del self.evicted_ids[:-16]

    def _victim(self):
        newest_counters = None
        for i in self._ids:
            if self._class[i] == COUNTERS:
                newest_counters = i
        best = None
        for i in self._ids:
            rank = _LATEST_COUNTERS if i == newest_counters else self._class[i]
            if best is None or rank < best[0]:
                best = (rank, i)
        return best[1]

    def peek(self, reader=None):
        """(id, bytes) of the oldest batch, or None when empty; (id, reader(file)) when a reader
        is given (json.load streams the batch instead of reading it whole), a batch of the
        shape the uplink encodes: any other is dropped (batch_problem)."""
        while self._ids:
            ident = self._ids[0]
            try:
                with open(self._file(ident), "rb" if reader is None else "r") as f:
                    if reader is None:
                        return ident, f.read()
                    batch = reader(f)
                cut = batch.pop("cut", 0) if isinstance(batch, dict) and reader is read_batch else 0
                if cut:
                    log("spool", WARN, "batch %d: %d record line(s) cut by a failed write, skipped" % (ident, cut))
                problem = batch_problem(batch)
                if problem is None:
                    return ident, batch
                batch = None
                raise ValueError(problem)
            except OSError:
                self._forget(ident)
            except ValueError as e:
                # Unreadable (flash corruption) or of the wrong shape: it can never be sent, and
                # must not block the queue.
                log("spool", WARN, "batch %d unreadable, dropped: %s" % (ident, e))
                self.corrupt += 1
                self.ack(ident)
        return None

    def _note_last(self, ident):
        atomic_write(self._path("last"), str(ident))
        self._unnoted = None

    def _forget(self, ident):
        if ident in self._class:
            self._ids.remove(ident)
            self.bytes -= self._size.pop(ident)
            del self._class[ident]

    def ack(self, ident):
        """Remove a batch the cloud acknowledged (or that eviction chose)."""
        if ident not in self._class:
            return
        if self._ids[-1] == ident:
            # Ids must never repeat (the cloud dedups on them): remember the newest before it goes.
            self._note_last(max(ident, self._unnoted or 0))
        elif self._unnoted is not None:
            try:
                self._note_last(self._unnoted)
            except OSError:
                pass    # the acknowledged batch still goes; the note waits for the next chance
        _remove(self._file(ident))
        self._forget(ident)
