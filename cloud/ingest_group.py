"""Group commit of ingest on PostgreSQL: the uploads of concurrent requests stored in one transaction.

A worker's requests queue their sealed envelopes; a writer takes whatever has queued and handles it
in one hop to a thread: open and decode each envelope, store every upload of the group with one
statement per step (set-wise over arrays, not a statement per upload or row), commit once, then
seal each answer. While the database works on one group, the next one gathers.

Exactly once holds as in Store.ingest: every box of the group is row-locked first (in the boxes'
order, so two workers' groups cannot deadlock), the sequence numbers are checked under the lock and
(box, epoch, upload) stays the uploads table's key (INSERT ... ON CONFLICT DO NOTHING tells which
uploads are new). A refused upload (replay, a duplicate) writes nothing and leaves the others in;
a second envelope of a box already in the group waits for the next transaction; if the group's
transaction fails as a whole, each of its uploads is stored again on its own, so only the upload
that caused it fails.
"""
import asyncio
import logging
import time

import orjson
import psycopg
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cloud.store import SeqReplay, item_numbers, plan_records

log = logging.getLogger("fleetbox.cloud")

MAX_GROUP = 64      # uploads per transaction: more makes the group's locks and the answers' wait longer
WRITERS = 1         # groups in flight per endpoint and worker

_LOCK = ("INSERT INTO boxes (box, last_seq, epoch) SELECT b, -1, 0 FROM unnest($1::text[]) AS t(b) ORDER BY b "
         "ON CONFLICT (box) DO UPDATE SET box = excluded.box RETURNING box, last_seq, epoch")
_TOP = ("SELECT t.b, t.e, (SELECT max(u.upload) FROM uploads u WHERE u.box = t.b AND u.epoch = t.e) "
        "FROM unnest($1::text[], $2::int8[]) AS t(b, e)")
_UPLOADS = ("INSERT INTO uploads (box, epoch, upload, scan, cycle, records, endpoint, received, bytes) "
            "SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::int8[], $6::int8[], "
            "$7::text[], $8::float8[], $9::int8[]) "
            "ON CONFLICT (box, epoch, upload) DO NOTHING RETURNING box")
_NAMED = ("SELECT d.box, d.device, d.num, d.record, d.clock FROM devices d "
          "JOIN unnest($1::text[], $2::int8[]) AS t(b, n) ON d.box = t.b AND d.num = t.n")
_DELETE = "DELETE FROM devices d USING unnest($1::text[], $2::text[]) AS t(b, v) WHERE d.box = t.b AND d.device = t.v"
# A group's readings and devices go in one statement, as one JSON text (orjson, in C) rather than as
# arrays, whose binary form psycopg builds element by element in Python: each reading is a row, and
# the newest reading of a device also carries the device's columns and "latest". The records are
# embedded as JSON (orjson.Fragment), not as strings, so neither side escapes them again; a `json`
# value keeps its text verbatim, which is what both tables store.
_RECORDS = ("WITH t AS MATERIALIZED (SELECT * FROM json_to_recordset($1::json) AS t(box text, device text, "
            "collected_at int8, cycle int8, scan text, total int8, lowest_supply float8, record json, ip text, "
            "manufacturer text, model text, serial text, updated float8, num int8, clock text, latest bool)), "
            "r AS (INSERT INTO readings (box, device, collected_at, cycle, scan, total, lowest_supply, record) "
            "SELECT box, device, collected_at, cycle, scan, total, lowest_supply, record::text FROM t) "
            "INSERT INTO devices (box, device, ip, manufacturer, model, serial, record, updated, num, clock) "
            "SELECT box, device, ip, manufacturer, model, serial, record::text, updated, num, clock "
            "FROM t WHERE latest "
            "ON CONFLICT (box, device) DO UPDATE SET ip = excluded.ip, manufacturer = excluded.manufacturer, "
            "model = excluded.model, serial = excluded.serial, record = excluded.record, "
            "updated = excluded.updated, clock = excluded.clock, num = coalesce(excluded.num, devices.num)")
_BOXES = ("UPDATE boxes SET last_seq = t.s, last_seen = t.seen, last_endpoint = t.ep, epoch = t.e, "
          "down_seq = boxes.down_seq + 1 "
          "FROM unnest($1::text[], $2::int8[], $3::float8[], $4::text[], $5::int8[]) AS t(b, s, seen, ep, e) "
          "WHERE boxes.box = t.b RETURNING boxes.box, boxes.down_seq")


def records_json(readings, devices):
    """The JSON text _RECORDS takes: `readings` in order (their dicts are reused), the newest
    reading of each of `devices` with that device's columns."""
    newest = {(r["box"], r["device"]): r for r in readings}
    for d in devices:
        newest[d["box"], d["device"]].update(d, latest=True)
    for r in readings:
        r["record"] = orjson.Fragment(r["record"])
    return orjson.dumps(readings).decode()


def ingest_many(store, uploads):
    """Store distinct boxes' uploads in one transaction -> one outcome per upload, in order:
    (fresh, resync, down_seq) as Store.ingest returns, or the SeqReplay it would raise.

    uploads: (box, seq, upload, batch, endpoint, nbytes, epoch) each, every box at most once.
    Raises what the database raises; nothing of the group is stored then."""
    now = time.time()
    outcomes = [None] * len(uploads)
    with store.engine.begin() as c:
        conn = c.connection.driver_connection

        def run(sql, params):
            with psycopg.RawCursor(conn) as cur:
                cur.execute(sql, params, prepare=True)
                return cur.fetchall() if cur.description else []

        state = {box: (last, epoch) for box, last, epoch in run(_LOCK, [sorted(u[0] for u in uploads)])}
        going = []      # (index, box, epoch of the upload, last seq)
        for i, (box, seq, upload, _, _, _, epoch) in enumerate(uploads):
            last, current = state[box]
            if epoch and epoch != current:
                current = epoch
            if last >= 0 and seq <= last:
                outcomes[i] = SeqReplay(last, seq == last and store._stored(c, box, current, upload))
                continue
            going.append((i, box, current, last))
        if not going:
            return outcomes
        based = [(i, box, current) for i, box, current, _ in going if uploads[i][3].get("base") is not None]
        tops = {}
        if based:
            tops = {(b, e): top for b, e, top in run(_TOP, [[b for _, b, _ in based], [e for _, _, e in based]])}
        rows = []
        for i, box, current, _ in going:
            box, seq, upload, batch, endpoint, nbytes, _ = uploads[i]
            rows.append((box, current, upload, batch.get("scan"), batch.get("cycle"),
                         len(batch.get("records") or []) + len(batch.get("seen") or []), endpoint, now, nbytes))
        fresh = {r[0] for r in run(_UPLOADS, [list(col) for col in zip(*rows)])}
        items, wanted = {}, ([], [])
        for i, box, _, _ in going:
            if box not in fresh:
                continue
            batch = uploads[i][3]
            records, seen = batch.get("records") or [], batch.get("seen") or []
            items[i] = list(records) + [{"=": seen[k], "@": seen[k + 1]} for k in range(0, len(seen), 2)]
            for num in item_numbers(items[i]):
                wanted[0].append(box)
                wanted[1].append(num)
        held = {}       # box -> {device: [num, record, clock]}
        for box, dev, num, rec, clock in run(_NAMED, list(wanted)) if wanted[0] else ():
            held.setdefault(box, {})[dev] = [num, rec, clock]
        removed, out_readings, out_devices, resyncs = ([], []), [], [], {}
        for i, box, current, _ in going:
            resync = resyncs[i] = []
            if i not in items:
                continue
            batch = uploads[i][3]
            if batch.get("base") is not None and tops.get((box, current)) != batch["base"]:
                resync = resyncs[i] = True
            gone, got_readings, got_devices = plan_records(box, batch.get("cycle"), batch.get("scan"), items[i], now,
                                                           resync, held.get(box, {}))
            for dev in gone:
                removed[0].append(box)
                removed[1].append(dev)
            out_readings += got_readings
            out_devices += got_devices
        if removed[0]:
            run(_DELETE, list(removed))
        if out_readings:
            run(_RECORDS, [records_json(out_readings, out_devices)])
        down = dict(run(_BOXES, [[b for _, b, _, _ in going], [max(last, uploads[i][1]) for i, _, _, last in going],
                                 [now] * len(going), [uploads[i][4] for i, _, _, _ in going],
                                 [e for _, _, e, _ in going]]))
    for i, box, _, _ in going:
        outcomes[i] = (box in fresh, resyncs[i], down[box])
    return outcomes


def handle_group(endpoint, items):
    """The answers (Responses, in order) to (data, client, t0) uploads that reached `endpoint`."""
    with endpoint.reading([data for data, _, _ in items]):
        return _handle_group(endpoint, items)


def _handle_group(endpoint, items):
    answers = [None] * len(items)
    opened, boxes, later = [], set(), []
    for i, (data, client, _) in enumerate(items):
        try:
            # the sequence number is checked under the box's lock below, not by a read of its own
            got = endpoint.open_upload(data, client, endpoint.reopener)
        except Exception as e:
            answers[i] = endpoint.internal_error(client, e)
            continue
        if isinstance(got, Response):
            answers[i] = got
        elif got[0]["device_id"] in boxes:
            later.append(i)     # the same box twice: the second waits for the first's commit
        else:
            boxes.add(got[0]["device_id"])
            opened.append((i, got))
    uploads = [(header["device_id"], header["seq"], head["upload"], batch, endpoint.name, len(items[i][0]),
                head["epoch"]) for i, (header, head, batch) in opened]
    try:
        outcomes = ingest_many(endpoint.store, uploads) if uploads else []
    except Exception:
        # Whatever failed the group, each upload on its own: only the one that causes it fails.
        log.warning("%s: a group of %d uploads failed; storing them one by one", endpoint.name, len(uploads),
                    exc_info=True, extra={"event": "group-failed", "fields": {"uploads": len(uploads)}})
        outcomes = None
    extra = {}
    if outcomes and endpoint.answer_hooks:
        try:    # the hooks' reads (update offers) once for the group, not once per answer
            extra = endpoint.group_fields([(header["device_id"], header["kid"]) for (_, (header, _, _)), outcome
                                           in zip(opened, outcomes) if not isinstance(outcome, SeqReplay)])
        except Exception:
            log.warning("%s: the answer hooks failed for a group; asking them per answer", endpoint.name,
                        exc_info=True, extra={"event": "group-hooks-failed", "fields": {"uploads": len(opened)}})
            extra = None
    for k, (i, (header, head, batch)) in enumerate(opened):
        data, client, t0 = items[i]
        try:
            if outcomes is None:
                try:
                    outcome = endpoint.store.ingest(*uploads[k])
                except SeqReplay as e:
                    outcome = e
            else:
                outcome = outcomes[k]
            answers[i] = endpoint.answer_upload(header, head, batch, data, client, t0, outcome,
                                                (extra or {}).get(header["device_id"]))
        except Exception as e:
            answers[i] = endpoint.internal_error(client, e)
    for i in later:
        data, client, t0 = items[i]
        try:
            answers[i] = endpoint._process_read(data, client, t0)
        except Exception as e:
            answers[i] = endpoint.internal_error(client, e)
    return answers


class GroupWriter:
    """Gathers one endpoint's uploads (in one worker) into groups, each handled by handle_group
    in one hop to a thread; each request gets its own answer back."""

    def __init__(self, endpoint, max_group=MAX_GROUP, writers=WRITERS):
        self.endpoint, self.max_group, self.writers = endpoint, max_group, writers
        self.pending = []
        self.running = 0

    async def submit(self, data, client, t0):
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((data, client, t0, fut))
        if self.running < self.writers:
            self.running += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self):
        try:
            while self.pending:
                group, self.pending = self.pending[:self.max_group], self.pending[self.max_group:]
                try:
                    answers = await run_in_threadpool(handle_group, self.endpoint, [g[:3] for g in group])
                except BaseException as e:   # handle_group answers each upload; this is a bug or a cancellation
                    for *_, fut in group:
                        if not fut.done():
                            fut.set_exception(e)
                    if not isinstance(e, Exception):
                        raise
                    continue
                for (*_, fut), answer in zip(group, answers):
                    if not fut.done():
                        fut.set_result(answer)
        finally:
            self.running -= 1
