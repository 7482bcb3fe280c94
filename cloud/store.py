"""The cloud's storage: devices, their readings, uploads seen, envelope sequence numbers.

One Store per process over a SQLAlchemy engine (SQLite or PostgreSQL, cloud/db.py); any
number of processes may share one database. Ingest is exactly-once across them by the
database alone: each upload takes its box's row lock (SELECT ... FOR UPDATE on PostgreSQL,
the database write lock on SQLite) and re-checks the envelope sequence number and the
upload id under it; (box, epoch, upload) is the uploads table's primary key besides.

liberty and rescue share the store, so a batch delivered to either is stored once, and an
envelope replayed to the other is still refused. Delta records (docs/payload.md) are merged
onto the device's full latest record: `devices` and `readings` always hold full records.
"""
import json
import re
import time

import orjson
import psycopg

from sqlalchemy import ARRAY, Integer, any_, bindparam, cast, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cloud import db, tenancy
from cloud.payload import device_key, lowest_supply, merge
from cloud.schema import boxes, devices, readings, rejects, uploads


MAX_REJECTS = 10000        # rows kept in `rejects`: the newest; the log has them all
MAX_REJECT_DETAIL = 200    # characters of a refusal's detail kept
ROWS_PER_INSERT = 500      # rows of one multi-row INSERT: 10 columns each stay under SQLite's 32766 parameters
MULTI_CACHE = 256          # multi-row INSERT statements kept, by table and row count
MULTI_COLUMNS = {
    "readings": ("box", "device", "collected_at", "cycle", "scan", "total", "lowest_supply", "record"),
    "devices": ("box", "device", "ip", "manufacturer", "model", "serial", "record", "updated", "num", "clock"),
}


class SeqReplay(Exception):
    """The envelope's sequence number is not past the box's last one (found under the box's lock:
    another worker stored it or a later one first). .last: the box's last sequence number."""

    def __init__(self, last, duplicate):
        super().__init__("seq not after %d%s" % (last, " (duplicate)" if duplicate else ""))
        self.last = last
        self.duplicate = duplicate


def _column_int(value):
    """An integer for a BIGINT column, else None: a printer's absurd counter (2^64-1) stays in the
    record's JSON but must not fail the whole upload (and so every other printer's data)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and -(1 << 63) <= value < 1 << 63 \
        else None


def record_text(rec):
    """A record's stored JSON text, keys sorted. orjson (C) costs a tenth of json.dumps; a number
    it cannot write (an integer beyond 64 bits, which a printer may report) goes through json."""
    try:
        return orjson.dumps(rec, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return json.dumps(rec, sort_keys=True, separators=(",", ":"))


def _clock(text):
    return json.loads(text) if text else [None, None]


def _raw_sql(q, dialect):
    """(SQL with PostgreSQL's $n parameters, their names in order, default values) of `q`."""
    compiled = q.compile(dialect=dialect)
    names = []

    def number(m):
        if m.group(1) not in names:
            names.append(m.group(1))
        return "$%d" % (names.index(m.group(1)) + 1)

    return re.sub(r"%\((\w+)\)s", number, str(compiled)).replace("%%", "%"), names, dict(compiled.params)


def item_numbers(items):
    """The device numbers a batch's items name (full "#" and delta "=")."""
    return {item.get("#", item.get("=")) for item in items} - {None}


def plan_records(box, cycle, scan, items, now, resync, rows):
    """(devices to delete, reading rows, device rows) for every item of one batch in order, against
    `rows` (device -> [num, record, clock] of the named devices as stored; updated in place).
    Appends to `resync` the numbers of deltas for devices not held."""
    removed, touched, out_readings = set(), {}, []
    for item in items:
        num = item.get("#", item.get("="))
        if "=" in item:
            dev = next((d for d, r in rows.items() if r[0] == num), None)
            if dev is None:
                # A delta for a device this store does not hold: keep what came, ask for the full record.
                if resync is not True:
                    resync.append(num)
                old, clock = {}, [None, None]
            else:
                old, clock = rows[dev][1], rows[dev][2]
                old = json.loads(old) if isinstance(old, str) else old
                clock = _clock(clock) if not isinstance(clock, list) else clock
            rec, clock = merge(old, clock, item, cycle)
            if dev is None:
                dev = device_key(rec) if rec.get("serial") or rec.get("mac") or rec.get("ip") else "#%d" % num
        else:
            rec = dict(item)
            rec.pop("#", None)
            dev = device_key(rec)
            up = rec.get("uptime_s")
            clock = [rec.get("collected_at"), up] if up is not None else [None, None]
            for other in [d for d, r in rows.items() if "#" in item and r[0] == num and d != dev]:
                del rows[other]         # a device sent in full takes its number from any stand-in row
                touched.pop(other, None)
                removed.add(other)
        blob = record_text(rec)
        out_readings.append({"box": box, "device": dev, "collected_at": rec.get("collected_at"), "cycle": cycle,
                             "scan": scan, "total": _column_int((rec.get("counters") or {}).get("total")),
                             "lowest_supply": lowest_supply(rec), "record": blob})
        prev = rows.get(dev)
        row_num = num if num is not None else (prev[0] if prev else None)
        rows[dev] = [row_num, rec, clock]
        removed.discard(dev)
        touched[dev] = {"box": box, "device": dev, "ip": rec.get("ip"), "manufacturer": rec.get("manufacturer"),
                        "model": rec.get("model"), "serial": rec.get("serial"), "record": blob, "updated": now,
                        "num": num, "clock": record_text(clock)}
    return removed, out_readings, list(touched.values())


class Store:
    max_rejects = MAX_REJECTS

    def __init__(self, target, migrate=True, pool_size=8):
        """target: a database URL or a SQLite file path. migrate: bring the schema to the newest
        revision first (the service does it once in its parent process)."""
        self.engine = db.make_engine(target, pool_size=pool_size)
        self.dialect = self.engine.dialect.name
        self._insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        if migrate:
            db.upgrade(self.engine)
        # Ingest's statements, built once: an upload is a handful of round trips and no query building.
        lock = self._insert(boxes).values(box=bindparam("box"), last_seq=-1, epoch=0)
        # Upserting the box's row takes its row lock (a new box's too) and returns its state: one round trip.
        self._q_lock = lock.on_conflict_do_update(index_elements=[boxes.c.box], set_={"box": lock.excluded.box}) \
            .returning(boxes.c.last_seq, boxes.c.epoch)
        down = self._insert(boxes).values(box=bindparam("box"), last_seq=-1, epoch=0, down_seq=1)
        self._q_down = down.on_conflict_do_update(index_elements=[boxes.c.box],
                                                  set_={"down_seq": boxes.c.down_seq + 1}).returning(boxes.c.down_seq)
        self._multi = {}
        self._q_top = select(func.max(uploads.c.upload)).where(uploads.c.box == bindparam("box"),
                                                                uploads.c.epoch == bindparam("epoch"))
        self._q_upload = self._insert(uploads).on_conflict_do_nothing(
            index_elements=[uploads.c.box, uploads.c.epoch, uploads.c.upload]).returning(uploads.c.upload)
        named = select(devices.c.device, devices.c.num, devices.c.record, devices.c.clock)
        if self.dialect == "postgresql":
            # One array parameter: the statement's text does not depend on how many are named.
            self._q_named = named.where(devices.c.box == bindparam("box"),
                                        devices.c.num == any_(cast(bindparam("nums"), ARRAY(Integer))))
        else:
            self._q_named = named.where(devices.c.box == bindparam("box"),
                                        devices.c.num.in_(bindparam("nums", expanding=True)))
        # The box's new state and the down seq of the answer about to be sealed, in the upload's own
        # transaction: the answer costs no transaction (and no commit) of its own.
        self._q_box = update(boxes).where(boxes.c.box == bindparam("k_box")).values(
            last_seq=bindparam("k_seq"), last_seen=bindparam("k_seen"), last_endpoint=bindparam("k_endpoint"),
            epoch=bindparam("k_epoch"), down_seq=boxes.c.down_seq + 1).returning(boxes.c.down_seq)
        self._q_last = select(boxes.c.last_seq).where(boxes.c.box == bindparam("box"))
        self._raw = {}
        if self.dialect == "postgresql":
            for q in (self._q_last, self._q_lock, self._q_top, self._q_upload, self._q_named, self._q_box):
                self._raw[q] = _raw_sql(q, self.engine.dialect)

    def close(self):
        self.engine.dispose()

    # -- replay store interface of cloud.envelope.Opener
    def last_seq(self, box):
        # Ended by COMMIT, not the ROLLBACK of a plain connect(): psycopg drops every prepared
        # statement of the connection on a ROLLBACK, and this runs before every upload.
        with self.engine.begin() as c:
            rows = self._run(c, self._q_last, {"box": box})
            return rows[0][0] if rows else None

    def commit(self, box, seq):
        with self.engine.begin() as c:
            last, _ = self._lock_box(c, box)
            c.execute(update(boxes).where(boxes.c.box == box).values(last_seq=max(last, seq), last_seen=time.time()))

    def next_down_seq(self, box, conn=None):
        """The box's next down seq (docs/downlink.md), taken and recorded in one statement, so
        two endpoints never seal the same number; inside `conn`'s transaction when given."""
        if conn is not None:
            return conn.execute(self._q_down, {"box": box}).scalar_one()
        with self.engine.begin() as c:
            return c.execute(self._q_down, {"box": box}).scalar_one()

    def down_seq(self, box):
        with self.engine.connect() as c:
            return c.execute(select(boxes.c.down_seq).where(boxes.c.box == box)).scalar()

    def _lock_box(self, c, box):
        """(last_seq, epoch) of the box with its row locked until the transaction ends; a box seen
        for the first time gets a row (last_seq -1) that only its committing transaction shows."""
        row = self._run(c, self._q_lock, {"box": box})[0]
        return row[0], row[1]

    def store_upload(self, box, seq, upload, batch, endpoint, nbytes, epoch=None):
        """Store one decoded batch atomically -> (fresh, resync); see ingest."""
        return self.ingest(box, seq, upload, batch, endpoint, nbytes, epoch)[:2]

    def ingest(self, box, seq, upload, batch, endpoint, nbytes, epoch=None):
        """Store one decoded batch (cloud.payload.decode_payload) atomically -> (fresh, resync, down_seq).

        down_seq is the box's next down seq, taken in the same transaction, for the answer that
        tells the box so (cloud.downlink.seal_answer(..., seq=down_seq)).

        fresh is False when this upload id was stored before (nothing is stored again).
        resync is [] when every delta applied to the state held here, True when the box's
        base is not the last upload stored (everything must come in full), else the numbers
        of the devices this store does not know. Upload ids are unique within the box's spool
        epoch; an upload naming a new epoch (the box's data partition was wiped) starts one.
        Raises SeqReplay when seq is not past the box's last sequence number."""
        records, seen = batch.get("records") or [], batch.get("seen") or []
        cycle, scan = batch.get("cycle"), batch.get("scan")
        now = time.time()
        resync = []
        with self.engine.begin() as c:
            last, current = self._lock_box(c, box)
            if epoch and epoch != current:
                current = epoch
            if last >= 0 and seq <= last:
                # The last number again is a copy only if its upload is stored: after a wipe of the
                # box's data the same number can carry a new batch, which must be sent again, not lost.
                raise SeqReplay(last, seq == last and self._stored(c, box, current, upload))
            # The base is checked against the uploads before this one (read first); the insert
            # tells whether this upload id is new (the primary key decides, under the box's lock).
            top = None
            if batch.get("base") is not None:
                top = self._run(c, self._q_top, {"box": box, "epoch": current})[0][0]
            row = {"box": box, "epoch": current, "upload": upload, "scan": scan, "cycle": cycle,
                   "records": len(records) + len(seen), "endpoint": endpoint, "received": now, "bytes": nbytes}
            fresh = bool(self._run(c, self._q_upload, row))
            if fresh:
                if batch.get("base") is not None and top != batch["base"]:
                    resync = True
                items = list(records) + [{"=": seen[i], "@": seen[i + 1]} for i in range(0, len(seen), 2)]
                self._store_records(c, box, cycle, scan, items, now, resync)
                if batch.get("h"):
                    tenancy.note_box_health(c, box, batch["h"], now)
            down_seq = self._run(c, self._q_box, {"k_box": box, "k_seq": max(last, seq), "k_seen": now,
                                                  "k_endpoint": endpoint, "k_epoch": current})[0][0]
        return fresh, resync, down_seq

    def _run(self, c, q, params):
        """Rows of one of ingest's statements. On PostgreSQL through a raw cursor with the SQL built
        at start: SQLAlchemy's own execution costs more Python per statement than the database's work."""
        raw = self._raw.get(q)
        if raw is None:
            return c.execute(q, params).all()
        sql, names, defaults = raw
        with psycopg.RawCursor(c.connection.driver_connection) as cur:
            cur.execute(sql, [params[n] if n in params else defaults[n] for n in names], prepare=True)
            return cur.fetchall() if cur.description else []

    def _stored(self, c, box, epoch, upload):
        return c.execute(select(uploads.c.upload).where(uploads.c.box == box, uploads.c.epoch == epoch,
                                                        uploads.c.upload == upload)).first() is not None

    def _store_records(self, c, box, cycle, scan, items, now, resync):
        """Every item of one batch in order, against the device rows as they stand: three statements
        (read the devices named, add the readings, upsert the devices) whatever the batch's size."""
        nums = item_numbers(items)
        rows = {}     # device -> [num, record dict or None (not read), clock]
        for dev, num, rec, clock in self._run(c, self._q_named, {"box": box, "nums": list(nums)}) if nums else ():
            rows[dev] = [num, rec, clock]
        removed, out_readings, out_devices = plan_records(box, cycle, scan, items, now, resync, rows)
        if removed:
            c.execute(delete(devices).where(devices.c.box == box, devices.c.device.in_(removed)))
        # One multi-row INSERT per table (in slices under SQLite's bound-parameter limit): executemany
        # costs a statement's driver and database overhead per row.
        self._insert_rows(c, "readings", out_readings)
        self._insert_rows(c, "devices", out_devices)

    def _insert_rows(self, c, table, rows):
        cols = MULTI_COLUMNS[table]
        for i in range(0, len(rows), ROWS_PER_INSERT):
            part = rows[i:i + ROWS_PER_INSERT]
            sql, order = self._multi_insert(table, len(part))
            values = [row[k] for row in part for k in cols]
            if self.dialect == "postgresql":
                # psycopg parses a query of more than 50 %(name)s parameters anew each time (it
                # caches only smaller ones): a raw cursor takes PostgreSQL's own $n as they are.
                with psycopg.RawCursor(c.connection.driver_connection) as cur:
                    cur.execute(sql, values, prepare=True)
            else:
                c.exec_driver_sql(sql, tuple(values[i] for i in order))

    def _multi_insert(self, table, n):
        """(SQL, positional order or None) of an INSERT of n rows, compiled once per
        (table, n): SQLAlchemy compiles a multi-row VALUES again on every execution, which costs
        more than the executemany it replaces. Parameters p0, p1, ... row by row: short names keep
        the text under psycopg's 4 KB limit for caching and preparing a statement."""
        got = self._multi.get((table, n))
        if got is None:
            cols = MULTI_COLUMNS[table]
            rows = [{k: bindparam("p%d" % (i * len(cols) + j)) for j, k in enumerate(cols)} for i in range(n)]
            if table == "readings":
                q = readings.insert().values(rows)
            else:
                ins = self._insert(devices).values(rows)
                q = ins.on_conflict_do_update(
                    index_elements=[devices.c.box, devices.c.device],
                    set_={"ip": ins.excluded.ip, "manufacturer": ins.excluded.manufacturer,
                          "model": ins.excluded.model, "serial": ins.excluded.serial, "record": ins.excluded.record,
                          "updated": ins.excluded.updated, "clock": ins.excluded.clock,
                          "num": func.coalesce(ins.excluded.num, devices.c.num)})
            compiled = q.compile(dialect=self.engine.dialect)
            # qmark (SQLite): the values in the order the SQL names them (the table's column order)
            order = [int(name[1:]) for name in compiled.positiontup] if compiled.positional else None
            sql = str(compiled)
            if self.dialect == "postgresql":
                sql = re.sub(r"%\(p(\d+)\)s", lambda m: "$%d" % (int(m.group(1)) + 1), sql).replace("%%", "%")
            got = sql, order
            if len(self._multi) < MULTI_CACHE:
                self._multi[(table, n)] = got
        return got

    def reject(self, endpoint, reason, detail):
        """Keep a refused upload's reason; only the newest MAX_REJECTS rows stay (anyone can POST junk)."""
        with self.engine.begin() as c:
            rid = c.execute(rejects.insert().values(at=time.time(), endpoint=endpoint, reason=reason,
                                                    detail=str(detail)[:MAX_REJECT_DETAIL])).inserted_primary_key[0]
            if rid > self.max_rejects:
                c.execute(delete(rejects).where(rejects.c.id <= rid - self.max_rejects))

    # -- queries (the cloud API and the simulator's report)
    def _all(self, q):
        with self.engine.connect() as c:
            return c.execute(q).all()

    def devices(self, box=None):
        q = select(devices.c.record)
        if box:
            q = q.where(devices.c.box == box)
        return [json.loads(r[0]) for r in self._all(q.order_by(devices.c.ip, devices.c.device))]

    def device(self, box, device):
        rows = self._all(select(devices.c.record).where(devices.c.box == box, devices.c.device == device))
        return json.loads(rows[0][0]) if rows else None

    def device_keys(self, box):
        return [r[0] for r in self._all(select(devices.c.device).where(devices.c.box == box)
                                        .order_by(devices.c.ip, devices.c.device))]

    def history(self, box, device, limit=100, since=None):
        """A device's full readings, newest first; `since`: only those collected at or after it."""
        q = select(readings.c.record).where(readings.c.box == box, readings.c.device == device)
        if since is not None:
            q = q.where(readings.c.collected_at >= since)
        return [json.loads(r[0]) for r in self._all(q.order_by(readings.c.id.desc()).limit(limit))]

    def boxes(self):
        ndev = select(func.count()).where(devices.c.box == boxes.c.box).scalar_subquery()
        nup = select(func.count()).where(uploads.c.box == boxes.c.box).scalar_subquery()
        q = select(boxes.c.box, boxes.c.last_seq, boxes.c.last_seen, boxes.c.last_endpoint, ndev, nup)
        keys = ("box", "last_seq", "last_seen", "last_endpoint", "devices", "uploads")
        return [dict(zip(keys, r)) for r in self._all(q.order_by(boxes.c.box))]

    def cycles(self, box):
        """Distinct collection cycles received from a box."""
        return [r[0] for r in self._all(select(uploads.c.cycle).distinct()
                                        .where(uploads.c.box == box, uploads.c.scan == "full")
                                        .order_by(uploads.c.cycle))]

    def uploads(self, box):
        keys = ("upload", "scan", "cycle", "records", "endpoint")
        q = select(uploads.c.upload, uploads.c.scan, uploads.c.cycle, uploads.c.records, uploads.c.endpoint)
        return [dict(zip(keys, r)) for r in self._all(q.where(uploads.c.box == box)
                                                      .order_by(uploads.c.upload, uploads.c.received))]

    def rejects(self):
        keys = ("endpoint", "reason", "detail")
        return [dict(zip(keys, r)) for r in self._all(select(rejects.c.endpoint, rejects.c.reason, rejects.c.detail)
                                                      .order_by(rejects.c.id))]
