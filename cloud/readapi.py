"""The read API, per tenant: every route needs a signed-in caller and answers only with the boxes
that caller may see (cloud.tenancy.visible_boxes); another tenant's box is "not found", the same
answer as a box that does not exist, so its existence does not leak either.

GET /v1/boxes                      the caller's boxes: sequence, last contact, endpoint, counts, site, health
GET /v1/devices[?box=B]            latest full record of every device
GET /v1/device?box=B&device=D      one device's latest full record
GET /v1/history?box=B&device=D[&limit=N][&since=T]   a device's full readings, newest first
GET /v1/alerts                     open alerts and errors of the caller's devices
GET /v1/me                         who the caller is
GET /v1/audit[?limit=N&before=ID]  the dealer's audit log (administrators, managers)
"""
import json

from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route

from cloud import audit as audit_mod
from cloud.auth import require
from cloud.payload import lowest_supply
from cloud.schema import boxes, devices, readings, uploads
from cloud.tenancy import box_health_of, box_places, visible_boxes


def _json(obj, status=200):
    return Response(json.dumps(obj, separators=(",", ":")).encode(), status, media_type="application/json")


def _int(q, name, default=None):
    if name not in q:
        return default
    try:
        return int(q[name])
    except ValueError:
        raise HTTPException(400, "%s must be an integer" % name)


# -- queries, shared with the dashboard (cloud/portal)

def box_list(conn, user):
    ndev = select(func.count()).where(devices.c.box == boxes.c.box).scalar_subquery()
    nup = select(func.count()).where(uploads.c.box == boxes.c.box).scalar_subquery()
    q = select(boxes.c.box, boxes.c.last_seq, boxes.c.last_seen, boxes.c.last_endpoint, ndev, nup) \
        .where(boxes.c.box.in_(visible_boxes(user))).order_by(boxes.c.box)
    keys = ("box", "last_seq", "last_seen", "last_endpoint", "devices", "uploads")
    out = [dict(zip(keys, r)) for r in conn.execute(q)]
    places = box_places(conn, [b["box"] for b in out])
    troubles = box_health_of(conn, [b["box"] for b in out])
    for b in out:
        b.update(places.get(b["box"]) or {"site": None, "customer": None, "firmware": None, "state": "unclaimed"})
        b["health"] = troubles.get(b["box"])
    return out


def device_rows(conn, user, box=None):
    """[(box, device key, record dict, updated)] of the caller's devices."""
    q = select(devices.c.box, devices.c.device, devices.c.record, devices.c.updated) \
        .where(devices.c.box.in_(visible_boxes(user)))
    if box is not None:
        q = q.where(devices.c.box == box)
    return [(b, d, json.loads(r), u) for b, d, r, u in conn.execute(q.order_by(devices.c.ip, devices.c.device))]


def fleet(conn, user, search=None):
    """The fleet table: one row per device with its place, last contact, counters and lowest supply."""
    rows = device_rows(conn, user)
    places = box_places(conn, {r[0] for r in rows})
    out = []
    for box, dev, rec, updated in rows:
        place = places.get(box) or {}
        row = {"box": box, "device": dev, "manufacturer": rec.get("manufacturer"), "model": rec.get("model"),
               "serial": rec.get("serial"), "ip": rec.get("ip"), "site": place.get("site"),
               "customer": place.get("customer"), "last_seen": rec.get("collected_at") or updated,
               "total": (rec.get("counters") or {}).get("total"), "counters": rec.get("counters") or {},
               "lowest_supply": lowest_supply(rec), "alerts": open_alerts(rec)}
        if search:
            hay = " ".join(str(row[k] or "") for k in ("manufacturer", "model", "serial", "ip", "site", "customer"))
            if search.lower() not in hay.lower():
                continue
        out.append(row)
    return out


def one_device(conn, user, box, device):
    q = select(devices.c.record).where(devices.c.box == box, devices.c.device == device,
                                       devices.c.box.in_(visible_boxes(user)))
    row = conn.execute(q).first()
    return json.loads(row[0]) if row else None


def history(conn, user, box, device, limit=100, since=None):
    q = select(readings.c.record).where(readings.c.box == box, readings.c.device == device,
                                        readings.c.box.in_(visible_boxes(user)))
    if since is not None:
        q = q.where(readings.c.collected_at >= since)
    return [json.loads(r[0]) for r in conn.execute(q.order_by(readings.c.id.desc()).limit(limit))]


def open_alerts(rec):
    """The record's standing alerts (Printer-MIB alert table) and device errors, as dicts."""
    status = rec.get("status") or {}
    out = [dict(a) for a in status.get("alerts") or [] if isinstance(a, dict)]
    out += [{"severity": "error", "code": e, "description": e} for e in status.get("errors") or []]
    return out


# -- routes

class ReadApi:
    def __init__(self, store):
        self.store = store

    def _run(self, request, fn, permission=None):
        with self.store.engine.begin() as conn:
            user = require(request, conn, permission)
            return fn(conn, user, request.query_params)

    def _route(self, fn, permission=None):
        async def endpoint(request):
            return await run_in_threadpool(self._run, request, fn, permission)
        return endpoint

    @staticmethod
    def boxes(conn, user, q):
        return _json(box_list(conn, user))

    @staticmethod
    def devices(conn, user, q):
        return _json([r[2] for r in device_rows(conn, user, q.get("box"))])

    @staticmethod
    def device(conn, user, q):
        if "box" not in q or "device" not in q:
            raise HTTPException(404, "not-found")
        rec = one_device(conn, user, q["box"], q["device"])
        if rec is None:
            return _json({"ok": False, "reason": "no such device"}, 404)
        return _json(rec)

    @staticmethod
    def history(conn, user, q):
        limit, since = _int(q, "limit", 100), _int(q, "since")
        if "box" not in q or "device" not in q:
            raise HTTPException(404, "not-found")
        return _json(history(conn, user, q["box"], q["device"], max(1, min(limit, 1000)), since))

    @staticmethod
    def alerts(conn, user, q):
        return _json([{"box": r["box"], "device": r["device"], "serial": r["serial"], "model": r["model"],
                       "site": r["site"], "alerts": r["alerts"]} for r in fleet(conn, user) if r["alerts"]])

    @staticmethod
    def me(conn, user, q):
        return _json({"email": user.email, "name": user.name, "role": user.role, "dealer": user.dealer_id,
                      "customer": user.customer_id})

    @staticmethod
    def audit(conn, user, q):
        limit = max(1, min(_int(q, "limit", 100), 1000))
        return _json(audit_mod.entries(conn, user.dealer_id, limit, _int(q, "before")))

    def routes(self):
        r = self._route
        return [Route("/v1/boxes", r(self.boxes)), Route("/v1/devices", r(self.devices)),
                Route("/v1/device", r(self.device)), Route("/v1/history", r(self.history)),
                Route("/v1/alerts", r(self.alerts)), Route("/v1/me", r(self.me)),
                Route("/v1/audit", r(self.audit, "audit"))]
