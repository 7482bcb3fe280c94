"""CSV export of counters for billing, per tenant, audited.

GET /v1/export/counters.csv?from=T&to=T[&kind=readings|period][&customer=ID]
    T: UNIX seconds or an ISO date/time (UTC). kind=readings (default): every reading in
    [from, to); kind=period: per device its first and last reading in the window and the
    pages in between (last - first, per counter). The `flags` column carries the box's
    counter-sanity flags (docs/device-record.md, counter_flags) of the readings used, so
    billing can hold back a device whose counters went backwards or were reset.
"""
import csv
import datetime
import io
import json

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route

from cloud.audit import audit
from cloud.auth import require
from cloud.schema import readings
from cloud.tenancy import box_places, box_sites, sites, visible_boxes

FIRST = ("total", "mono", "color")


def parse_time(text):
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        t = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(400, "from and to: UNIX seconds or ISO dates")
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return int(t.timestamp())


def iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else ""


def flat_counters(counters, prefix=""):
    out = {}
    for k, v in (counters or {}).items():
        if isinstance(v, dict):
            out.update(flat_counters(v, prefix + k + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[prefix + k] = v
    return out


def _columns(rows):
    names = set()
    for r in rows:
        names.update(r["counters"])
    return [n for n in FIRST if n in names] + sorted(names - set(FIRST))


def counter_rows(conn, user, start, end, customer_id=None):
    """The caller's readings in [start, end), oldest first, as dicts with flat counters."""
    q = select(readings.c.box, readings.c.device, readings.c.collected_at, readings.c.record).where(
        readings.c.box.in_(visible_boxes(user)), readings.c.collected_at >= start, readings.c.collected_at < end)
    if customer_id is not None:
        q = q.where(readings.c.box.in_(select(box_sites.c.box).join(sites, sites.c.id == box_sites.c.site_id)
                                       .where(sites.c.customer_id == customer_id)))
    out = []
    for box, dev, at, rec in conn.execute(q.order_by(readings.c.box, readings.c.device, readings.c.id)):
        rec = json.loads(rec)
        out.append({"box": box, "device": dev, "at": at, "serial": rec.get("serial"),
                    "manufacturer": rec.get("manufacturer"), "model": rec.get("model"),
                    "counters": flat_counters(rec.get("counters")), "flags": list(rec.get("counter_flags") or [])})
    return out


def to_csv(conn, rows, kind):
    places = box_places(conn, {r["box"] for r in rows})
    cols = _columns(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    ident = ["customer", "site", "box", "device", "serial", "manufacturer", "model"]
    if kind == "period":
        w.writerow(ident + ["first_at", "last_at", "readings"] + ["%s_first" % c for c in cols]
                   + ["%s_last" % c for c in cols] + ["%s_pages" % c for c in cols] + ["flags"])
    else:
        w.writerow(ident + ["collected_at"] + cols + ["flags"])
    groups = {}
    for r in rows:
        groups.setdefault((r["box"], r["device"]), []).append(r)
    for (box, dev), group in groups.items():
        place = places.get(box) or {}
        last = group[-1]
        head = [place.get("customer") or "", place.get("site") or "", box, dev, last["serial"] or "",
                last["manufacturer"] or "", last["model"] or ""]
        if kind == "period":
            first = group[0]
            flags = sorted({f for r in group for f in r["flags"]})
            pages = [(last["counters"][c] - first["counters"][c]) if c in last["counters"] and c in first["counters"]
                     else "" for c in cols]
            w.writerow(head + [iso(first["at"]), iso(last["at"]), len(group)]
                       + [first["counters"].get(c, "") for c in cols] + [last["counters"].get(c, "") for c in cols]
                       + pages + [" ".join(flags)])
        else:
            for r in group:
                w.writerow(head + [iso(r["at"])] + [r["counters"].get(c, "") for c in cols] + [" ".join(r["flags"])])
    return buf.getvalue()


class Export:
    def __init__(self, store):
        self.store = store

    def _counters(self, request):
        q = request.query_params
        if "from" not in q or "to" not in q:
            raise HTTPException(400, "from and to are needed")
        start, end = parse_time(q["from"]), parse_time(q["to"])
        kind = q.get("kind", "readings")
        if kind not in ("readings", "period"):
            raise HTTPException(400, "kind: readings or period")
        customer = q.get("customer")
        with self.store.engine.begin() as conn:
            user = require(request, conn, "export")
            if customer is not None:
                if not customer.isdigit():
                    raise HTTPException(400, "customer must be an integer")
                customer = int(customer)
            rows = counter_rows(conn, user, start, end, customer)
            body = to_csv(conn, rows, kind)
            audit(conn, user, "export", "counters", {"from": start, "to": end, "kind": kind, "customer": customer,
                                                     "rows": len(rows)})
        name = "counters-%s-%s.csv" % (iso(start)[:10], iso(end)[:10])
        return Response(body.encode(), 200, media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": 'attachment; filename="%s"' % name})

    async def counters(self, request):
        return await run_in_threadpool(self._counters, request)

    def routes(self):
        return [Route("/v1/export/counters.csv", self.counters)]
