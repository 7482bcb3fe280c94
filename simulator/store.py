"""The cloud's storage (SQLite): devices, their readings, uploads seen, envelope sequence numbers.

liberty and rescue are two receivers over one Store, so a batch delivered to either
is stored once, and an envelope replayed to the other is still refused.
"""
import json
import sqlite3
import threading
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS boxes (box TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, last_seen REAL,
                                  last_endpoint TEXT);
CREATE TABLE IF NOT EXISTS uploads (box TEXT NOT NULL, upload INTEGER NOT NULL, scan TEXT, cycle INTEGER,
                                    records INTEGER, endpoint TEXT, received REAL, bytes INTEGER,
                                    PRIMARY KEY (box, upload));
CREATE TABLE IF NOT EXISTS devices (box TEXT NOT NULL, device TEXT NOT NULL, ip TEXT, manufacturer TEXT,
                                    model TEXT, serial TEXT, record TEXT, updated REAL,
                                    PRIMARY KEY (box, device));
CREATE TABLE IF NOT EXISTS readings (box TEXT NOT NULL, device TEXT NOT NULL, collected_at INTEGER, cycle INTEGER,
                                     scan TEXT, total INTEGER, lowest_supply INTEGER, record TEXT);
CREATE TABLE IF NOT EXISTS rejects (at REAL, endpoint TEXT, reason TEXT, detail TEXT);
"""


def device_key(rec):
    """A device's identity across readings: its serial, else its MAC, else its address."""
    return rec.get("serial") or rec.get("mac") or "%s:%s" % (rec.get("ip"), rec.get("port", 161))


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

    def store_upload(self, box, seq, upload, batch, endpoint, nbytes):
        """Store one decrypted batch atomically; False when this upload id was stored before."""
        records = batch.get("records") or []
        now = time.time()
        with self.lock:
            cur = self.db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                if cur.execute("SELECT 1 FROM uploads WHERE box=? AND upload=?", (box, upload)).fetchone():
                    fresh = False
                else:
                    fresh = True
                    cur.execute("INSERT INTO uploads VALUES(?,?,?,?,?,?,?,?)",
                                (box, upload, batch.get("scan"), batch.get("cycle"), len(records), endpoint, now, nbytes))
                    for rec in records:
                        dev = device_key(rec)
                        blob = json.dumps(rec, sort_keys=True)
                        cur.execute("INSERT INTO readings VALUES(?,?,?,?,?,?,?,?)",
                                    (box, dev, rec.get("collected_at"), batch.get("cycle"), batch.get("scan"),
                                     (rec.get("counters") or {}).get("total"), lowest_supply(rec), blob))
                        cur.execute("INSERT INTO devices VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(box, device) DO UPDATE "
                                    "SET ip=excluded.ip, manufacturer=excluded.manufacturer, model=excluded.model, "
                                    "serial=excluded.serial, record=excluded.record, updated=excluded.updated",
                                    (box, dev, rec.get("ip"), rec.get("manufacturer"), rec.get("model"),
                                     rec.get("serial"), blob, now))
                cur.execute("INSERT INTO boxes(box, last_seq, last_seen, last_endpoint) VALUES(?,?,?,?) "
                            "ON CONFLICT(box) DO UPDATE SET last_seq=max(last_seq, excluded.last_seq), "
                            "last_seen=excluded.last_seen, last_endpoint=excluded.last_endpoint",
                            (box, seq, now, endpoint))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return fresh

    def reject(self, endpoint, reason, detail):
        with self.lock:
            self.db.execute("INSERT INTO rejects VALUES(?,?,?,?)", (time.time(), endpoint, reason, detail))

    # -- queries (the cloud API and the simulator's report)
    def devices(self, box=None):
        q = "SELECT record FROM devices" + (" WHERE box=?" if box else "") + " ORDER BY ip"
        return [json.loads(r[0]) for r in self.db.execute(q, (box,) if box else ())]

    def history(self, box, device, limit=100):
        return [json.loads(r[0]) for r in self.db.execute(
            "SELECT record FROM readings WHERE box=? AND device=? ORDER BY rowid DESC LIMIT ?", (box, device, limit))]

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
