"""Rescue and root rotation on the update service (docs/update-protocol.md, "Rescue" and "Root rotation").

Box side:
    POST /v1/rescue   mutual TLS with the box's factory certificate (compared with the manufacturing
                      manifest's copy, as provisioning does); body {"serial", "kid", "board", "counter",
                      "root"[, "refused": {"rollout", "image", "reason", "detail"}]
                      [, "reverted": {"rollout", "image", "reason", "detail"}]}
        200  a sealed answer (docs/downlink.md) whose `offer` names the newest image an operator marked
             as the rescue image for the box's board (a rollout with "rescue": true), with its key wrap
        404 {"reason": "no-rescue-image"}   403 {"reason": "no-certificate" | "unknown-box" |
             "wrong-certificate" | "revoked"}   409 {"reason": "stale-key"}: the box's kid is not the current
    GET  /v1/updates/roots/<version>   root metadata (.fbr) of that version, for boxes walking a rotation
Operator side:
    POST /v1/updates/roots   body: a root (.fbr, fbtool root rotate); offers carry the newest version as
                             `root`. Audited as rollout.root.

Root metadata is kept beside the images (update_images, kind "root", version = the root version):
public, signed, checked link by link by every box; the service holds no signing key and cannot make one.
"""
import base64
import hashlib
import hmac
import json
import struct
import time

from sqlalchemy import delete, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route

from cloud import downlink
from cloud.audit import audit
from cloud.provision_schema import provisioned
from cloud.schema import update_images, update_progress, update_rollouts
from cloud.updates import _json, make_wrap

MAX_ROOT = 65536
MAX_REQUEST = 4096
RESCUE = "rescue"        # update_rollouts.target of a rollout that marks its image as the rescue image


class RootError(ValueError):
    pass


def parse_root(data):
    """(version, digest hex of the signed part) of root metadata; its signatures are the boxes' to check."""
    if len(data) < 12 or data[:4] != b"FBRT" or struct.unpack_from("<H", data, 4)[0] != 1:
        raise RootError("not fleetbox root metadata")
    size = struct.unpack_from("<I", data, 8)[0]
    if len(data) > MAX_ROOT or len(data) < 12 + size:
        raise RootError("root metadata truncated or too large")
    try:
        body = json.loads(data[12:12 + size])
        version = body["version"]
    except (ValueError, KeyError, TypeError):
        raise RootError("root body is not JSON with a version")
    if body.get("type") != "fleetbox-root" or not isinstance(version, int) or version < 1:
        raise RootError("not a fleetbox root (type/version)")
    return version, hashlib.sha256(data[:12 + size]).hexdigest()


def _vtuple(text):
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return ()


class Rescue:
    def __init__(self, store, keys, provisioning, updates):
        self.store = store
        self.keys = keys
        self.provisioning = provisioning
        self.updates = updates

    # -- roots
    def publish_root(self, data, user="system"):
        """Keep root metadata for boxes to fetch. Another root of a published version replaces it:
        boxes refuse one that does not verify, and the operator must be able to publish the right one."""
        version, _ = parse_root(data)
        digest = hashlib.sha256(data).hexdigest()      # the whole file: a re-signed root is another one
        with self.store.engine.begin() as c:
            have = c.execute(select(update_images.c.digest).where(
                update_images.c.kind == "root", update_images.c.security_counter == version)).scalar()
            if have == digest:
                return version, False
            if have is not None:
                c.execute(delete(update_images).where(update_images.c.digest == have))
            c.execute(update_images.insert().values(digest=digest, kind="root", board="*", version=str(version),
                                                    security_counter=version, size=len(data), content_key="",
                                                    data=data, published=time.time()))
            audit(c, user, "rollout.root", "root:%d" % version, {"sha256": digest, "replaced": have})
        return version, True

    def root_bytes(self, version):
        with self.store.engine.connect() as c:
            data = c.execute(select(update_images.c.data).where(
                update_images.c.kind == "root", update_images.c.security_counter == version)).scalar()
        return bytes(data) if data is not None else None

    def newest_root(self):
        with self.store.engine.connect() as c:
            return c.execute(select(update_images.c.security_counter).where(update_images.c.kind == "root")
                             .order_by(update_images.c.security_counter.desc()).limit(1)).scalar() or 0

    # -- the box's request
    def _box(self, cert_der, serial):
        if not cert_der:
            return "no-certificate"
        self.provisioning.sync_manifest()
        with self.store.engine.connect() as c:
            row = c.execute(select(provisioned.c.cert, provisioned.c.state).where(
                provisioned.c.serial == serial)).first()
        if row is None:
            return "unknown-box"
        if not hmac.compare_digest(base64.b64decode(row.cert), cert_der):
            return "wrong-certificate"
        if row.state == "revoked":
            return "revoked"
        return None

    def choose(self, box, board):
        """The rescue rollout for box: the newest image (security counter, version) marked for
        rescue on its board that the box has not refused or reverted."""
        with self.store.engine.connect() as c:
            rows = c.execute(select(update_rollouts.c.id, update_images.c.digest, update_images.c.size,
                                    update_images.c.version, update_images.c.kind, update_images.c.content_key,
                                    update_images.c.security_counter)
                             .join(update_images, update_images.c.digest == update_rollouts.c.image)
                             .where(update_rollouts.c.target == RESCUE, update_rollouts.c.state == "active",
                                    update_images.c.board == board, update_images.c.kind == "app")).all()
            failed = set(c.execute(select(update_progress.c.rollout).where(
                update_progress.c.box == box, update_progress.c.state.in_(("refused", "reverted")))).scalars())
        rows = [r for r in rows if r.id not in failed]
        if not rows:
            return None
        return max(rows, key=lambda r: (r.security_counter, _vtuple(r.version), r.id))

    def _note_failure(self, box, failed, state):
        """The box's last attempt refused an image, or the loader left the slot the box last staged
        (state "reverted"): a failure of that rollout (it may halt), never offered to the box again.
        A refusal names a rescue rollout; a revert may name an ordinary one the box was offered
        (its update crash-looped and the slot the box fell back to no longer verifies: no app runs
        to report it)."""
        try:
            rid, reason = int(failed["rollout"]), str(failed.get("reason") or "")[:64]
        except (KeyError, TypeError, ValueError):
            return
        with self.store.engine.connect() as c:
            target = c.execute(select(update_rollouts.c.target).where(update_rollouts.c.id == rid)).scalar()
            done = c.execute(select(update_progress.c.state, update_progress.c.reason).where(
                update_progress.c.rollout == rid, update_progress.c.box == box)).first()
        ours = target == RESCUE or (state == "reverted" and done is not None)
        if ours and tuple(done or ()) != (state, reason or None):    # said again: recorded once
            self.updates._progress(box, rid, state, reason or None, str(failed.get("detail") or "")[:200] or None)

    def rescue(self, cert_der, req):
        """(status, body bytes or a JSON object) for a rescue request."""
        serial, kid, board = req.get("serial"), req.get("kid"), req.get("board")
        if not isinstance(serial, str) or not isinstance(kid, int) or not isinstance(board, str):
            return 400, {"ok": False, "reason": "malformed"}
        refusal = self._box(cert_der, serial)
        if refusal:
            return 403, {"ok": False, "reason": refusal}
        key = self.keys(serial, kid)
        if key is None:
            return 409, {"ok": False, "reason": "stale-key"}
        for state in ("refused", "reverted"):
            if isinstance(req.get(state), dict):
                self._note_failure(serial, req[state], state)
        r = self.choose(serial, board)
        if r is None:
            return 404, {"ok": False, "reason": "no-rescue-image"}
        with self.store.engine.connect() as c:
            done = c.execute(select(update_progress.c.state).where(
                update_progress.c.rollout == r.id, update_progress.c.box == serial)).scalar()
        if done is None:
            self.updates._progress(serial, r.id, "offered", None, None)
        offer = {"rollout": r.id, "image": r.digest, "url": "/v1/updates/images/" + r.digest, "size": r.size,
                 "version": r.version, "kind": r.kind,
                 "wrap": make_wrap(bytes.fromhex(r.digest), bytes.fromhex(r.content_key), serial, kid, key)}
        root = self.newest_root()
        if root:
            offer["root"] = root
        body = downlink.seal_answer(self.store, (kid, key), serial, {"offer": offer, "time": int(time.time())})
        return 200, body

    # -- routes
    async def r_rescue(self, request):
        tls = request.scope.get("extensions", {}).get("tls", {})
        body = await request.body()
        try:
            req = json.loads(body) if len(body) <= MAX_REQUEST else None
        except ValueError:
            req = None
        if not isinstance(req, dict):
            return _json(400, {"ok": False, "reason": "malformed"})
        status, out = await run_in_threadpool(self.rescue, tls.get("client_cert"), req)
        if isinstance(out, bytes):
            return Response(out, status)
        return _json(status, out)

    async def r_publish_root(self, request):
        user = await run_in_threadpool(self.updates.operator, request)
        data = await request.body()
        try:
            version, new = await run_in_threadpool(self.publish_root, data, user)
        except RootError as e:
            return _json(400, {"ok": False, "reason": str(e)})
        return _json(201 if new else 200, {"ok": True, "root": version})

    async def r_root(self, request):
        data = await run_in_threadpool(self.root_bytes, request.path_params["version"])
        if data is None:
            return _json(404, {"ok": False, "reason": "not-found"})
        return Response(data, 200)

    def routes(self):
        routes = [Route("/v1/updates/roots", self.r_publish_root, methods=["POST"]),
                  Route("/v1/updates/roots/{version:int}", self.r_root)]
        if self.provisioning is not None:      # the box is known by its factory certificate
            routes.append(Route("/v1/rescue", self.r_rescue, methods=["POST"]))
        return routes


def mount(routes, store, keys, provisioning, updates):
    """Add rescue and roots to an endpoint with the update service `updates` (cloud.updates.mount's)."""
    svc = Rescue(store, keys, provisioning, updates)
    routes.extend(svc.routes())
    offer_for = updates.offer_for

    def with_root(box, kid):
        # every offer names the newest root: a box behind it walks the rotation before it installs
        offer = offer_for(box, kid)
        if offer is not None:
            root = svc.newest_root()
            if root:
                offer["root"] = root
        return offer
    updates.offer_for = with_root
    return svc
