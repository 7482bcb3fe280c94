"""The update service: publish signed images, roll them out, serve their bytes, follow progress.

POST /v1/updates/images        body: a signed .fbu (docs/update-image.md); header X-Content-Key: its
                               content key (hex), kept to wrap it per box; the service never has a signing key
GET  /v1/updates/images/<digest>   the image's bytes, with HTTP Range (206), for the box's resumable download
POST /v1/updates/rollouts      {"image", "boxes": [...] | "percent": N | "all": true, "max_failure_rate", "min_reports"}
GET  /v1/updates/rollouts[/<id>]   state (active, halted) and each box's progress, counts by state
POST /v1/updates/report        a box's progress: an `up` envelope (docs/envelope.md) of content type 3
                               sealed with the box's key, plaintext JSON {"rollout", "image", "state", ...}

Boxes learn of an offer in the sealed answer to their uploads (docs/downlink.md, field `offer`,
docs/update-protocol.md): the wrap in it opens the image for that box alone. A rollout halts by
itself once its failures (refused, reverted) reach max_failure_rate of at least min_reports reports.
Operator routes (publish, rollouts, status) want a signed-in user (cloud/auth.py) whose role may
"rollout" and whose dealer owns the device keys: images and rollouts span the whole fleet, so no
other dealer's staff drives them. Publishing and rollouts are audited; a confirmed report sets
the box's firmware on the dashboard (tenancy.set_box_info).
"""
import hashlib
import json
import re
import struct
import threading
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select, update
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route

from cloud.audit import audit
from cloud.auth import require
from cloud.envelope import CloudEnvelopeError, Opener
from cloud.tenancy import set_box_info
from cloud.schema import update_images, update_progress, update_rollouts

CT_UPDATE_REPORT = 3
KEK_INFO = b"fleetbox/update-kek/v1\x00"
KEY_CHECK_PREFIX = b"fleetbox/content-key-check/v1\x00"
MAX_IMAGE = 4 << 20
MAX_RANGE = 65536
FAILED = ("refused", "reverted")
# a pack is "installed" (in force from the box's next cycle, no trial boot); "reverted" for a pack:
# it failed its check at a later load and the box went back to the pack before it
FINAL = ("staged", "confirmed", "installed", "refused", "reverted")
STATES = ("offered", "downloading", "interrupted", "staged", "confirmed", "installed", "refused", "reverted")


class UpdateServiceError(ValueError):
    pass


def _json(status, obj):
    return Response(json.dumps(obj, separators=(",", ":"), sort_keys=True).encode(), status,
                    media_type="application/json")


def parse_head(data):
    """(digest, manifest) of a signed image: the digest the signatures and wraps name."""
    if len(data) < 16 or data[:4] != b"FBUP" or struct.unpack_from("<H", data, 4)[0] != 2:
        raise UpdateServiceError("not a format-2 update image")
    m, t = struct.unpack_from("<II", data, 8)
    if m > 4096 or len(data) < 16 + m + t:
        raise UpdateServiceError("image head truncated or too large")
    try:
        manifest = json.loads(data[16:16 + m])
    except ValueError:
        raise UpdateServiceError("manifest is not JSON")
    for k in ("kind", "board", "version", "security_counter", "key_wrap", "ciphertext_size"):
        if k not in manifest:
            raise UpdateServiceError("manifest lacks %r" % k)
    return hashlib.sha256(data[:16 + m + t]).digest(), manifest


def kek(device_key, serial):
    return HKDF(hashes.SHA256(), 32, None, KEK_INFO + serial.encode()).derive(device_key)


def make_wrap(digest, content_key, serial, kid, device_key):
    """The per-box wrap (docs/update-image.md, "Key wrap"): JSON text."""
    return json.dumps({"type": "fleetbox-key-wrap", "format": 1, "image": digest.hex(), "serial": serial,
                       "kid": kid, "wrapped": aes_key_wrap(kek(device_key, serial), content_key).hex()},
                      separators=(",", ":"), sort_keys=True)


def _in_percent(box, rollout_id, percent):
    """A stable pick of percent% of the fleet, different for every rollout."""
    h = hashlib.sha256(b"%d/%s" % (rollout_id, box.encode())).digest()
    return int.from_bytes(h[:4], "big") % 100 < percent


class Updates:
    def __init__(self, store, keys, window=86400):
        self.store = store
        self.keys = keys
        self.opener = Opener(keys, store, window)
        self._cache = {}
        self._lock = threading.Lock()

    # -- operator
    def operator(self, request):
        """The signed-in user who may drive updates, or 401/403."""
        with self.store.engine.begin() as conn:
            user = require(request, conn, "rollout")
        if not user.owns_keys:
            raise HTTPException(403, "forbidden")
        return user

    def publish(self, data, content_key, user="system"):
        digest, m = parse_head(data)
        if len(data) > MAX_IMAGE:
            raise UpdateServiceError("image of %d bytes" % len(data))
        if hashlib.sha256(KEY_CHECK_PREFIX + content_key).hexdigest() != m["key_wrap"].get("key_check"):
            raise UpdateServiceError("the content key is not this image's (key_check)")
        row = {"digest": digest.hex(), "kind": m["kind"], "board": m["board"], "version": m["version"],
               "security_counter": int(m["security_counter"]), "size": len(data), "content_key": content_key.hex(),
               "data": data, "published": time.time()}
        with self.store.engine.begin() as c:
            if c.execute(select(update_images.c.digest).where(update_images.c.digest == row["digest"])).first():
                return row, False
            c.execute(update_images.insert().values(**row))
            audit(c, user, "rollout.publish", "image:%s" % row["digest"],
                  {"kind": m["kind"], "board": m["board"], "version": m["version"]})
        return row, True

    def create_rollout(self, spec, user="system"):
        image = spec.get("image")
        boxes = spec.get("boxes")
        percent = spec.get("percent")
        if spec.get("rescue") is True:     # the image a box with no bootable slot gets (cloud/rescue.py)
            target, percent = "rescue", None
        elif spec.get("all"):
            target, percent = "all", 100
        elif isinstance(boxes, list) and boxes and all(isinstance(b, str) for b in boxes):
            target = "boxes"
        elif isinstance(percent, int) and 0 < percent <= 100:
            target = "percent"
        else:
            raise UpdateServiceError("say which boxes: boxes [...], percent 1..100 or all")
        rate = float(spec.get("max_failure_rate", 0.2))
        minimum = int(spec.get("min_reports", 3))
        with self.store.engine.begin() as c:
            if not c.execute(select(update_images.c.digest).where(update_images.c.digest == image)).first():
                raise UpdateServiceError("no published image %r" % image)
            row = c.execute(update_rollouts.insert().values(
                image=image, target=target, percent=percent, boxes=json.dumps(boxes) if target == "boxes" else None,
                state="active", max_failure_rate=rate, min_reports=minimum, created=time.time()))
            rid = row.inserted_primary_key[0]
            audit(c, user, "rollout", "rollout:%d" % rid, {"image": image, "target": target, "percent": percent,
                                                           "boxes": boxes if target == "boxes" else None})
        return rid

    def rollout_status(self, rid=None):
        with self.store.engine.connect() as c:
            q = select(update_rollouts)
            if rid is not None:
                q = q.where(update_rollouts.c.id == rid)
            rollouts = [dict(r._mapping) for r in c.execute(q.order_by(update_rollouts.c.id))]
            for r in rollouts:
                rows = c.execute(select(update_progress).where(update_progress.c.rollout == r["id"])
                                 .order_by(update_progress.c.box)).all()
                r["boxes"] = json.loads(r["boxes"]) if r["boxes"] else None
                r["progress"] = [dict(p._mapping) for p in rows]
                r["counts"] = {}
                for p in rows:
                    r["counts"][p.state] = r["counts"].get(p.state, 0) + 1
        return rollouts

    # -- the box
    def image_bytes(self, digest):
        data = self._cache.get(digest)
        if data is None:
            with self.store.engine.connect() as c:
                data = c.execute(select(update_images.c.data).where(update_images.c.digest == digest)).scalar()
            if data is not None:
                self._cache[digest] = data = bytes(data)
        return data

    def offer_for(self, box, kid):
        """The `offer` field for box's next sealed answer, or None."""
        chosen = None
        with self.store.engine.connect() as c:     # read only; closed before _progress writes
            rows = c.execute(select(update_rollouts, update_images.c.content_key, update_images.c.size,
                                    update_images.c.version, update_images.c.kind)
                             .join(update_images, update_images.c.digest == update_rollouts.c.image)
                             .where(update_rollouts.c.state == "active").order_by(update_rollouts.c.id.desc())).all()
            for r in rows:
                if r.target == "rescue":
                    continue
                if r.target == "boxes" and box not in json.loads(r.boxes):
                    continue
                if r.target == "percent" and not _in_percent(box, r.id, r.percent):
                    continue
                done = c.execute(select(update_progress.c.state).where(
                    update_progress.c.rollout == r.id, update_progress.c.box == box)).scalar()
                if done not in FINAL:
                    chosen = r, done
                    break
        if chosen is None:
            return None
        r, done = chosen
        key = self.keys(box, kid)
        if key is None:
            return None
        if done is None:
            self._progress(box, r.id, "offered", None, None)
        return {"rollout": r.id, "image": r.image, "url": "/v1/updates/images/" + r.image, "size": r.size,
                "version": r.version, "kind": r.kind,
                "wrap": make_wrap(bytes.fromhex(r.image), bytes.fromhex(r.content_key), box, kid, key)}

    def offers_for(self, pairs):
        """{box: offer} for a group's answers ((box, kid) pairs): one read finds whether any rollout
        is active (mostly none is); only then does each box go through offer_for."""
        with self.store.engine.connect() as c:
            active = c.execute(select(update_rollouts.c.id).where(update_rollouts.c.state == "active").limit(1))
            if active.first() is None:
                return {}
        return {box: o for box, kid in pairs if (o := self.offer_for(box, kid))}

    def _progress(self, box, rid, state, reason, detail):
        now = time.time()
        with self._lock, self.store.engine.begin() as c:
            key = (update_progress.c.rollout == rid) & (update_progress.c.box == box)
            if c.execute(select(update_progress.c.box).where(key)).first():
                c.execute(update(update_progress).where(key).values(state=state, reason=reason, detail=detail,
                                                                     updated=now))
            else:
                c.execute(update_progress.insert().values(rollout=rid, box=box, state=state, reason=reason,
                                                          detail=detail, updated=now))
            ro = c.execute(select(update_rollouts).where(update_rollouts.c.id == rid)).first()
            if state == "confirmed":     # the box runs the image now: the dashboard shows its version
                set_box_info(c, box, firmware=c.execute(select(update_images.c.version).where(
                    update_images.c.digest == ro.image)).scalar())
            states = [s for (s,) in c.execute(select(update_progress.c.state).where(update_progress.c.rollout == rid))]
            reported = [s for s in states if s != "offered"]
            failed = sum(1 for s in states if s in FAILED)
            if ro.state == "active" and len(reported) >= ro.min_reports and reported and \
                    failed / len(reported) >= ro.max_failure_rate:
                c.execute(update(update_rollouts).where(update_rollouts.c.id == rid).values(
                    state="halted", halted_reason="%d of %d boxes failed" % (failed, len(reported))))

    def report(self, body):
        header, plaintext = self.opener.open(body)
        if header["content_type"] != CT_UPDATE_REPORT:
            raise UpdateServiceError("content type %d is not an update report" % header["content_type"])
        try:
            rep = json.loads(plaintext)
            rid = int(rep["rollout"])
            state = rep["state"]
        except (ValueError, KeyError, TypeError):
            raise UpdateServiceError("report is not {rollout, state}")
        if state not in STATES:
            raise UpdateServiceError("state %r" % state)
        self.opener.commit(header)
        self._progress(header["device_id"], rid, state, str(rep.get("reason") or "")[:64] or None,
                       str(rep.get("detail") or "")[:200] or None)
        return header["device_id"], rid, state

    # -- routes
    async def r_publish(self, request):
        user = await run_in_threadpool(self.operator, request)
        data = await request.body()
        try:
            key = bytes.fromhex(request.headers.get("x-content-key", ""))
            if len(key) != 32:
                raise ValueError
        except ValueError:
            return _json(400, {"ok": False, "reason": "X-Content-Key: the 32-byte content key, hex"})
        try:
            row, new = await run_in_threadpool(self.publish, data, key, user)
        except UpdateServiceError as e:
            return _json(400, {"ok": False, "reason": str(e)})
        return _json(201 if new else 200, {"ok": True, "image": row["digest"], "kind": row["kind"],
                                           "board": row["board"], "version": row["version"], "size": row["size"]})

    async def r_rollouts(self, request):
        user = await run_in_threadpool(self.operator, request)
        if request.method == "GET":
            return _json(200, await run_in_threadpool(self.rollout_status))
        try:
            spec = json.loads(await request.body())
            rid = await run_in_threadpool(self.create_rollout, spec, user)
        except (ValueError, AttributeError) as e:
            return _json(400, {"ok": False, "reason": str(e)})
        return _json(201, {"ok": True, "rollout": rid})

    async def r_rollout(self, request):
        await run_in_threadpool(self.operator, request)
        found = await run_in_threadpool(self.rollout_status, int(request.path_params["rid"]))
        return _json(200, found[0]) if found else _json(404, {"ok": False, "reason": "not-found"})

    async def r_image(self, request):
        data = await run_in_threadpool(self.image_bytes, request.path_params["digest"])
        if data is None:
            return _json(404, {"ok": False, "reason": "not-found"})
        rng = request.headers.get("range")
        if rng is None:
            return Response(data, 200, headers={"accept-ranges": "bytes"})
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", rng)
        if not m or int(m.group(2)) < int(m.group(1)) or int(m.group(2)) - int(m.group(1)) >= MAX_RANGE:
            return Response(b"", 416, headers={"content-range": "bytes */%d" % len(data)})
        a, b = int(m.group(1)), min(int(m.group(2)), len(data) - 1)
        if a >= len(data):
            return Response(b"", 416, headers={"content-range": "bytes */%d" % len(data)})
        return Response(data[a:b + 1], 206, headers={"content-range": "bytes %d-%d/%d" % (a, b, len(data))})

    async def r_report(self, request):
        body = await request.body()
        try:
            box, rid, state = await run_in_threadpool(self.report, body)
        except CloudEnvelopeError as e:
            return _json(403 if e.reason in ("unknown-key", "bad-mac") else 409, {"ok": False, "reason": e.reason})
        except UpdateServiceError as e:
            return _json(400, {"ok": False, "reason": str(e)})
        return _json(200, {"ok": True, "rollout": rid, "state": state})

    def routes(self):
        return [Route("/v1/updates/images", self.r_publish, methods=["POST"]),
                Route("/v1/updates/images/{digest}", self.r_image),
                Route("/v1/updates/rollouts", self.r_rollouts, methods=["GET", "POST"]),
                Route("/v1/updates/rollouts/{rid:int}", self.r_rollout),
                Route("/v1/updates/report", self.r_report, methods=["POST"])]


def mount(routes, endpoint, store, keys, window=86400):
    """Add the update service to an endpoint: its routes, and offers in the endpoint's sealed answers."""
    svc = Updates(store, keys, window)
    routes.extend(svc.routes())
    def offer(box, kid):
        o = svc.offer_for(box, kid)
        return {"offer": o} if o else None

    offer.many = lambda pairs: {box: {"offer": o} for box, o in svc.offers_for(pairs).items()}   # a group's answers
    endpoint.answer_hooks.append(offer)
    return svc
