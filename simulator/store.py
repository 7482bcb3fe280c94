"""The cloud's storage (SQLite): devices, their readings, uploads seen, envelope sequence numbers.

liberty and rescue are two receivers over one Store, so a batch delivered to either
is stored once, and an envelope replayed to the other is still refused. Delta records
(docs/payload.md) are merged onto the device's full latest record: `devices` and
`readings` always hold full records.
"""
import json
import sqlite3
import threading
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS boxes (box TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, last_seen REAL,
                                  last_endpoint TEXT, epoch INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS uploads (box TEXT NOT NULL, upload INTEGER NOT NULL, scan TEXT, cycle INTEGER,
                                    records INTEGER, endpoint TEXT, received REAL, bytes INTEGER,
                                    epoch INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (box, epoch, upload));
CREATE TABLE IF NOT EXISTS devices (box TEXT NOT NULL, device TEXT NOT NULL, ip TEXT, manufacturer TEXT,
                                    model TEXT, serial TEXT, record TEXT, updated REAL,
                                    num INTEGER, clock TEXT,
                                    PRIMARY KEY (box, device));
CREATE TABLE IF NOT EXISTS readings (box TEXT NOT NULL, device TEXT NOT NULL, collected_at INTEGER, cycle INTEGER,
                                     scan TEXT, total INTEGER, lowest_supply INTEGER, record TEXT);
CREATE TABLE IF NOT EXISTS rejects (at REAL, endpoint TEXT, reason TEXT, detail TEXT);
"""


def device_key(rec):
    """A device's identity across readings: its serial, else its MAC, else its address."""
    return rec.get("serial") or rec.get("mac") or "%s:%s" % (rec.get("ip"), rec.get("port", 161))


CONTROL = ("#", "=", "-", "@", "^")


def merge(old, clock, delta, cycle):
    """(full record, clock) from the full record held and a delta record (docs/payload.md).

    clock is [collected_at, uptime_s] of the last reading that carried an uptime."""
    rec = dict(old)
    for k, v in delta.items():
        if k not in CONTROL:
            rec[k] = v
    for k in delta.get("-", ()):
        rec.pop(k, None)
    if "collected_at" not in delta and cycle is not None:
        rec["collected_at"] = cycle + delta.get("@", 0)
    at = rec.get("collected_at")
    if "uptime_s" in delta:
        if delta["uptime_s"] is not None:
            clock = [at, delta["uptime_s"]]
    elif "^" in delta and delta["^"] is None:
        pass    # not read this time: the last value stays
    elif None not in clock and at is not None:
        rec["uptime_s"] = clock[1] + at - clock[0] + delta.get("^", 0)
        clock = [at, rec["uptime_s"]]
    return rec, clock


def lowest_supply(rec):
    levels = [s.get("percent") for s in rec.get("supplies") or [] if s.get("percent") is not None]
    return min(levels) if levels else None


class Store:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    # -- replay store interface of cloud_envelope.Opener
    def last_seq(self, box):
        row = self.db.execute("SELECT last_seq FROM boxes WHERE box=?", (box,)).fetchone()
        return row[0] if row else None

    def commit(self, box, seq):
        with self.lock:
            self.db.execute("INSERT INTO boxes(box, last_seq, last_seen) VALUES(?,?,?) "
                            "ON CONFLICT(box) DO UPDATE SET last_seq=max(last_seq, excluded.last_seq), "
                            "last_seen=excluded.last_seen", (box, seq, time.time()))

    def store_upload(self, box, seq, upload, batch, endpoint, nbytes, epoch=None):
        """Store one decoded batch (cloud.decode_payload) atomically -> (fresh, resync).

        fresh is False when this upload id was stored before (nothing is stored again).
        resync is [] when every delta applied to the state held here, True when the box's
        base is not the last upload stored (everything must come in full), else the numbers
        of the devices this store does not know. Upload ids are unique within the box's spool
        epoch; an upload naming a new epoch (the box's data partition was wiped) starts one."""
        records, seen = batch.get("records") or [], batch.get("seen") or []
        cycle = batch.get("cycle")
        now = time.time()
        resync = []
        with self.lock:
            cur = self.db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                row = cur.execute("SELECT epoch FROM boxes WHERE box=?", (box,)).fetchone()
                current = row[0] if row else 0
                if epoch and epoch != current:
                    current = epoch
                    cur.execute("INSERT INTO boxes(box, last_seq, epoch) VALUES(?,?,?) ON CONFLICT(box) DO UPDATE "
                                "SET epoch=excluded.epoch", (box, seq, epoch))
                if cur.execute("SELECT 1 FROM uploads WHERE box=? AND epoch=? AND upload=?",
                               (box, current, upload)).fetchone():
                    fresh = False
                else:
                    fresh = True
                    if batch.get("base") is not None:
                        last = cur.execute("SELECT max(upload) FROM uploads WHERE box=? AND epoch=?",
                                           (box, current)).fetchone()[0]
                        if last != batch["base"]:
                            resync = True
                    cur.execute("INSERT INTO uploads VALUES(?,?,?,?,?,?,?,?,?)",
                                (box, upload, batch.get("scan"), cycle, len(records) + len(seen), endpoint, now, nbytes,
                                 current))
                    for item in records:
                        self._store_record(cur, box, cycle, batch.get("scan"), item, now, resync)
                    for i in range(0, len(seen), 2):
                        delta = {"=": seen[i], "@": seen[i + 1]}
                        self._store_record(cur, box, cycle, batch.get("scan"), delta, now, resync)
                cur.execute("INSERT INTO boxes(box, last_seq, last_seen, last_endpoint) VALUES(?,?,?,?) "
                            "ON CONFLICT(box) DO UPDATE SET last_seq=max(last_seq, excluded.last_seq), "
                            "last_seen=excluded.last_seen, last_endpoint=excluded.last_endpoint",
                            (box, seq, now, endpoint))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return fresh, resync

    def _store_record(self, cur, box, cycle, scan, item, now, resync):
        num = item.get("#", item.get("="))
        if "=" in item:
            row = cur.execute("SELECT device, record, clock FROM devices WHERE box=? AND num=?",
                              (box, num)).fetchone()
            if row is None:
                # A delta for a device this store does not hold: keep what came, ask for the full record.
                if resync is not True:
                    resync.append(num)
                dev, old, clock = "#%d" % num, {}, [None, None]
            else:
                dev, old, clock = row[0], json.loads(row[1]), json.loads(row[2]) if row[2] else [None, None]
            rec, clock = merge(old, clock, item, cycle)
            if row is None:
                dev = device_key(rec) if rec.get("serial") or rec.get("mac") or rec.get("ip") else dev
        else:
            rec = {k: v for k, v in item.items() if k != "#"}
            dev = device_key(rec)
            up = rec.get("uptime_s")
            clock = [rec.get("collected_at"), up] if up is not None else [None, None]
        if "#" in item:   # a device sent in full takes its number from any stand-in row
            cur.execute("DELETE FROM devices WHERE box=? AND num=? AND device<>?", (box, num, dev))
        blob = json.dumps(rec, sort_keys=True)
        cur.execute("INSERT INTO readings VALUES(?,?,?,?,?,?,?,?)",
                    (box, dev, rec.get("collected_at"), cycle, scan,
                     (rec.get("counters") or {}).get("total"), lowest_supply(rec), blob))
        cur.execute("INSERT INTO devices VALUES(?,?,?,?,?,?,?,?,?,?) ON CONFLICT(box, device) DO UPDATE "
                    "SET ip=excluded.ip, manufacturer=excluded.manufacturer, model=excluded.model, "
                    "serial=excluded.serial, record=excluded.record, updated=excluded.updated, "
                    "num=coalesce(excluded.num, num), clock=excluded.clock",
                    (box, dev, rec.get("ip"), rec.get("manufacturer"), rec.get("model"),
                     rec.get("serial"), blob, now, num, json.dumps(clock)))

    def reject(self, endpoint, reason, detail):
        with self.lock:
            self.db.execute("INSERT INTO rejects VALUES(?,?,?,?)", (time.time(), endpoint, reason, detail))

    # -- queries (the cloud API and the simulator's report)
    def devices(self, box=None):
        q = "SELECT record FROM devices" + (" WHERE box=?" if box else "") + " ORDER BY ip"
        return [json.loads(r[0]) for r in self.db.execute(q, (box,) if box else ())]

    def device(self, box, device):
        row = self.db.execute("SELECT record FROM devices WHERE box=? AND device=?", (box, device)).fetchone()
        return json.loads(row[0]) if row else None

    def device_keys(self, box):
        return [r[0] for r in self.db.execute("SELECT device FROM devices WHERE box=? ORDER BY ip", (box,))]

    def history(self, box, device, limit=100, since=None):
        """A device's full readings, newest first; `since`: only those collected at or after it."""
        q = "SELECT record FROM readings WHERE box=? AND device=?"
        args = [box, device]
        if since is not None:
            q += " AND collected_at >= ?"
            args.append(since)
        return [json.loads(r[0]) for r in self.db.execute(q + " ORDER BY rowid DESC LIMIT ?", args + [limit])]

    def boxes(self):
        return [dict(zip(("box", "last_seq", "last_seen", "last_endpoint", "devices", "uploads"), r)) for r in self.db.execute(
            "SELECT b.box, b.last_seq, b.last_seen, b.last_endpoint, "
            "(SELECT count(*) FROM devices d WHERE d.box=b.box), (SELECT count(*) FROM uploads u WHERE u.box=b.box) "
            "FROM boxes b ORDER BY b.box")]

    def cycles(self, box):
        """Distinct collection cycles received from a box."""
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT cycle FROM uploads WHERE box=? AND scan='full' ORDER BY cycle", (box,))]

    def uploads(self, box):
        return [dict(zip(("upload", "scan", "cycle", "records", "endpoint"), r)) for r in self.db.execute(
            "SELECT upload, scan, cycle, records, endpoint FROM uploads WHERE box=? ORDER BY upload", (box,))]

    def rejects(self):
        return [dict(zip(("endpoint", "reason", "detail"), r)) for r in self.db.execute(
            "SELECT endpoint, reason, detail FROM rejects ORDER BY at")]
