"""Zero-touch provisioning, claiming and remote configuration (docs/provisioning.md).

Box side (mutual TLS: the box's factory certificate, checked against the factory CA by the
TLS layer and here against the manufacturing manifest's copy):

    POST /v1/provision      {"serial", "kid", "version"[, "refused": {"version", "reason"}]}
        202 {"state": "unclaimed", "retry_s"}         nobody has claimed the box yet
        403 {"reason": "revoked" | "unknown-box" | "wrong-certificate" | "no-certificate"}
        204                                           the box runs the current key and configuration
        200 {"state": "claimed", "kid", ["key"], ["answer"]}
            key: the envelope master key (hex), only when the box's kid is not the current one;
            answer: a sealed cloud answer (docs/downlink.md) with the field config = {"v": n, "body": {...}}:
            authenticated end to end with the box's key, under the box's down seq.

Dealer side: a signed-in user of the dealer (cloud/auth.py: an API token or a session). The dealer
is the user's; another dealer's box or site is "not found", as in the read API. Every change is audited.

    POST /v1/claim    {"serial", "code", "site": site id}   permission claim; 403 wrong code, 429 rate-limited
    POST /v1/unclaim  {"serial"}                           permission claim
    POST /v1/revoke   {"serial"}   POST /v1/release {"serial"}           permission revoke
    POST /v1/rotate-key {"serial"}  PUT /v1/config {"serial", "config": {...}} -> {"version"}   permission configure
    GET  /v1/provisioning[?serial=S]   the caller's boxes: state, versions, refusal, alerts; never a key or a code hash
"""
import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from contextlib import contextmanager

from sqlalchemy import delete, func, insert, select, update
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route

from cloud import downlink
from cloud.audit import audit
from cloud.auth import require
from cloud.logs import event
from cloud.provision_schema import claim_failures, clone_alerts, provisioned, quarantine
from cloud.tenancy import assign_box, box_sites, customers, set_box_info, sites, visible_boxes

log = logging.getLogger("fleetbox.cloud.provision")
UNCLAIMED_RETRY_S = 30        # what an unclaimed box is told; it backs off further on its own
CLAIM_WINDOW_S = 900
CLAIM_MAX_FAILURES = 5        # per dealer within CLAIM_WINDOW_S
CLAIM_MAX_SERIAL_FAILURES = 20  # per serial, from all dealers: guessing one box's code stays hopeless
CLONE_WINDOW_S = 3600
CLONE_REPLAYS = 3             # refused sequence numbers under the current key before a clone alert
MAX_BODY = 65536


def _reply(status, obj=None):
    if obj is None:
        return Response(b"", status)
    return Response(json.dumps(obj, separators=(",", ":")).encode(), status, media_type="application/json")


def normalize_code(code):
    return "".join(c for c in str(code).upper() if c.isalnum())


def code_hash(serial, code, salt):
    """As fbtool.factory.code_hash (the factory side): PBKDF2-SHA256, salt || serial, 100000 rounds."""
    return hashlib.pbkdf2_hmac("sha256", normalize_code(code).encode(), salt + serial.encode(), 100000).hex()


# The permission (cloud/accounts.py) each dealer action needs.
PERMISSION = {"claim": "claim", "unclaim": "claim", "revoke": "revoke", "release": "revoke",
              "rotate-key": "configure", "config": "configure"}

# Their names in the audit log (cloud/audit.py: a known action or a dotted one).
AUDIT_ACTION = {"unclaim": "claim.unclaim", "revoke": "claim.revoke", "release": "claim.release"}


# The columns ingest asks about a box (Provisioning.reading).
FACTS = (provisioned.c.serial, provisioned.c.kid, provisioned.c.env_key, provisioned.c.state, provisioned.c.quarantined,
         provisioned.c.config_version, provisioned.c.running_version, provisioned.c.refused_version)


def _not_found():
    return 404, {"ok": False, "reason": "unknown-box"}


class Provisioning:
    def __init__(self, store, manifest_paths):
        """manifest_paths: the factory manifest (fbtool factory --manifest), or a list of them."""
        self.store = store
        self.engine = store.engine
        self.manifest_paths = [manifest_paths] if isinstance(manifest_paths, str) else list(manifest_paths)
        self._mtimes = {}
        self._held = threading.local()      # .facts: what `reading` read, per thread

    # -- the factory manifests: new boxes appear as unclaimed
    def sync_manifest(self):
        for path in self.manifest_paths:
            self._sync(path)

    def _sync(self, path):
        try:
            m = os.path.getmtime(path)
        except OSError:
            return
        if self._mtimes.get(path) == m:
            return
        with open(path) as f:
            boxes = json.load(f).get("boxes", {})
        with self.engine.begin() as c:
            known = set(c.execute(select(provisioned.c.serial)).scalars())
            for serial, e in boxes.items():
                if serial not in known:
                    c.execute(insert(provisioned).values(serial=serial, cert=e["cert"], spki=e["spki"],
                                                         claim_salt=e["claim_salt"], claim_hash=e["claim_hash"]))
        self._mtimes[path] = m

    def _row(self, c, serial):
        return c.execute(select(provisioned).where(provisioned.c.serial == serial)).mappings().first()

    @staticmethod
    def _owned(user):
        """Which provisioning rows are the user's dealer's: unclaimed ones belong to the administrators
        of the dealer owning the device keys (as in tenancy.visible_boxes)."""
        mine = provisioned.c.dealer == str(user.dealer_id)
        if user.role == "administrator" and user.owns_keys:
            mine = mine | provisioned.c.dealer.is_(None)
        if user.role == "customer":
            mine = mine & provisioned.c.serial.in_(visible_boxes(user))
        return mine

    def _mine(self, c, user, serial):
        return c.execute(select(provisioned).where(provisioned.c.serial == serial, self._owned(user))) \
            .mappings().first()

    # -- what ingest asks about a box: read once for all the boxes of a request or a group
    @contextmanager
    def reading(self, serials):
        """Within the block, this thread's questions of ingest about `serials` (keys, quarantine, a newer
        configuration) are answered from one query instead of one query each: for a group of 64
        uploads, 1 round trip instead of 256. Other serials are asked as before. The answers are as of
        the block's start, as each query's was as of its own start."""
        held = getattr(self._held, "facts", None)
        with self.engine.connect() as c:
            got = {r.serial: r for r in c.execute(select(*FACTS).where(provisioned.c.serial.in_(set(serials))))}
        self._held.facts = (got, set(serials))
        try:
            yield
        finally:
            self._held.facts = held

    def _fact(self, serial, *columns):
        """The row of `serial` with `columns` (None: no such box), read now or held by `reading`."""
        facts = getattr(self._held, "facts", None)
        if facts is not None and serial in facts[1]:
            return facts[0].get(serial)
        with self.engine.connect() as c:
            return c.execute(select(*columns).where(provisioned.c.serial == serial)).first()

    # -- envelope keys: (device_id, kid) -> key, for boxes that got theirs by provisioning
    def keys(self, device_id, kid):
        r = self._fact(device_id, provisioned.c.kid, provisioned.c.env_key, provisioned.c.state)
        if r is None or r.state != "claimed" or r.kid != kid or not r.env_key:
            return None
        return bytes.fromhex(r.env_key)

    # -- dealer actions: user is a cloud.accounts.User whose role may do PERMISSION[action]
    def claim(self, user, serial, code, site_id):
        self.sync_manifest()
        dealer = str(user.dealer_id)
        now = time.time()
        with self.engine.begin() as c:
            place = c.execute(select(customers.c.name, sites.c.name)
                              .join(customers, customers.c.id == sites.c.customer_id)
                              .where(sites.c.id == site_id, customers.c.dealer_id == user.dealer_id)).first()
            if place is None or user.role == "customer":
                return 404, {"ok": False, "reason": "unknown-site"}
            since = now - CLAIM_WINDOW_S
            recent = select(func.count()).select_from(claim_failures).where(claim_failures.c.at > since)
            by_dealer = c.execute(recent.where(claim_failures.c.dealer == dealer)).scalar()
            by_serial = c.execute(recent.where(claim_failures.c.serial == serial)).scalar()
            if by_dealer >= CLAIM_MAX_FAILURES or by_serial >= CLAIM_MAX_SERIAL_FAILURES:
                return 429, {"ok": False, "reason": "rate-limited", "retry_s": CLAIM_WINDOW_S}
            row = self._row(c, serial)
            good = row is not None and hmac.compare_digest(
                code_hash(serial, code, bytes.fromhex(row["claim_salt"])), row["claim_hash"])
            if not good:
                # an unknown serial and a wrong code look alike: serials are not enumerable
                c.execute(insert(claim_failures).values(dealer=dealer, serial=serial, at=now))
                audit(c, user, "claim.failed", "box:%s" % serial, {"site": site_id})
                return 403, {"ok": False, "reason": "wrong-code"}
            if row["state"] == "revoked":
                return 409, {"ok": False, "reason": "revoked"}
            if row["state"] == "claimed" and row["dealer"] != dealer:
                return 409, {"ok": False, "reason": "claimed-by-another"}
            c.execute(update(provisioned).where(provisioned.c.serial == serial).values(
                state="claimed", dealer=dealer, customer=place[0], site=place[1], claimed_at=now))
            assign_box(c, serial, site_id)
            if row["state"] != "claimed":
                set_box_info(c, serial, state="claimed")
            audit(c, user, "claim", "box:%s" % serial, {"site": site_id})
        event(log, logging.INFO, "claimed", "%s claimed %s for %s/%s", user, serial, place[0], place[1],
              box=serial, dealer=dealer, customer=place[0], site=place[1])
        return 200, {"ok": True, "serial": serial, "state": "claimed", "site": site_id}

    def _change(self, user, serial, action, values, box_state=None, detail=None, resolve=None):
        """One dealer action on one of the user's boxes, its dashboard state and audit entry in one transaction."""
        with self.engine.begin() as c:
            row = self._mine(c, user, serial)
            if row is None:
                return _not_found()
            if action == "unclaim" and row["state"] == "revoked":
                # a revoked identity may be a clone's: claiming it afresh would hand it a key again
                return 409, {"ok": False, "reason": "revoked"}
            if resolve:
                c.execute(update(clone_alerts).where(clone_alerts.c.serial == serial,
                                                     clone_alerts.c.resolved.is_(None)).values(resolved=resolve))
            c.execute(update(provisioned).where(provisioned.c.serial == serial).values(**values))
            if action == "unclaim":
                assign_box(c, serial, None)
            elif box_state:
                set_box_info(c, serial, state=box_state(row) if callable(box_state) else box_state)
            audit(c, user, AUDIT_ACTION[action], "box:%s" % serial, detail)
        return 200, {"ok": True, "serial": serial}

    def unclaim(self, user, serial):
        # the box provisions again from scratch once someone claims it: key and configuration go
        return self._change(user, serial, "unclaim", dict(
            state="unclaimed", dealer=None, customer=None, site=None, kid=0, env_key=None, config=None,
            config_version=0, running_version=0))

    def revoke(self, user, serial):
        return self._change(user, serial, "revoke", {"state": "revoked", "env_key": None}, "revoked",
                            resolve="revoked")

    def release(self, user, serial):
        """A person decided the alert was no clone: uploads flow again (kept ones stay for review)."""
        return self._change(user, serial, "release", {"quarantined": 0},
                            lambda row: "provisioned" if row["kid"] else row["state"], resolve="released")

    def set_config(self, user, serial, cfg):
        if not isinstance(cfg, dict):
            return 400, {"ok": False, "reason": "config must be an object"}
        with self.engine.begin() as c:
            row = self._mine(c, user, serial)
            if row is None:
                return _not_found()
            version = row["config_version"] + 1
            c.execute(update(provisioned).where(provisioned.c.serial == serial).values(
                config=json.dumps(cfg, sort_keys=True), config_version=version))
            # the version only: a configuration holds SNMP secrets
            audit(c, user, "config", "box:%s" % serial, {"version": version})
        event(log, logging.INFO, "config", "configuration %d for %s", version, serial, box=serial, version=version)
        return 200, {"ok": True, "serial": serial, "version": version}

    def rotate_key(self, user, serial):
        """A new envelope key; the box fetches it at its next check (its kid is then behind)."""
        with self.engine.begin() as c:
            row = self._mine(c, user, serial)
            if row is None:
                return _not_found()
            if row["state"] != "claimed":
                return 409, {"ok": False, "reason": "not-claimed"}
            kid = row["kid"] + 1
            c.execute(update(provisioned).where(provisioned.c.serial == serial).values(
                kid=kid, env_key=secrets.token_hex(32)))
            audit(c, user, "config.rotate-key", "box:%s" % serial, {"kid": kid})
        return 200, {"ok": True, "serial": serial, "kid": kid}

    def view(self, serial=None, user=None):
        """The read API: no key, no claim-code hash; the user's boxes (None: every box, for the service itself)."""
        q = select(provisioned.c.serial, provisioned.c.state, provisioned.c.dealer, provisioned.c.customer,
                   provisioned.c.site, provisioned.c.kid, provisioned.c.config_version,
                   provisioned.c.running_version, provisioned.c.refused_version, provisioned.c.refused_reason,
                   provisioned.c.last_contact, provisioned.c.quarantined)
        if serial:
            q = q.where(provisioned.c.serial == serial)
        if user is not None:
            q = q.where(self._owned(user))
        with self.engine.connect() as c:
            rows = [dict(r) for r in c.execute(q.order_by(provisioned.c.serial)).mappings()]
            for r in rows:
                r["alerts"] = [dict(a) for a in c.execute(
                    select(clone_alerts.c.at, clone_alerts.c.reason, clone_alerts.c.resolved)
                    .where(clone_alerts.c.serial == r["serial"]).order_by(clone_alerts.c.id)).mappings()]
                r["quarantined_uploads"] = c.execute(select(func.count()).select_from(quarantine).where(
                    quarantine.c.serial == r["serial"])).scalar()
        return rows

    # -- the box's request
    def provision(self, cert_der, req):
        self.sync_manifest()
        if not cert_der:
            return 403, {"ok": False, "reason": "no-certificate"}
        serial = req.get("serial")
        kid = req.get("kid", 0)
        version = req.get("version", 0)
        if not isinstance(serial, str) or not isinstance(kid, int) or not isinstance(version, int):
            return 400, {"ok": False, "reason": "malformed"}
        now = time.time()
        with self.engine.begin() as c:
            row = self._row(c, serial)
            if row is None:
                return 403, {"ok": False, "reason": "unknown-box"}
            if not hmac.compare_digest(base64.b64decode(row["cert"]), cert_der):
                return 403, {"ok": False, "reason": "wrong-certificate"}
            if row["state"] == "revoked":
                return 403, {"ok": False, "reason": "revoked"}
            values = {"last_contact": now, "running_version": version}
            refused = req.get("refused")
            if isinstance(refused, dict) and isinstance(refused.get("version"), int):
                values["refused_version"] = refused["version"]
                values["refused_reason"] = str(refused.get("reason", ""))[:200]
            if row["state"] != "claimed":
                c.execute(update(provisioned).where(provisioned.c.serial == serial).values(**values))
                return 202, {"state": "unclaimed", "retry_s": UNCLAIMED_RETRY_S}
            out = {"state": "claimed"}
            key_hex, cur_kid = row["env_key"], row["kid"]
            if kid == 0 or not key_hex:
                # first provisioning, or after a factory reset: a fresh key (old data stays sealed under the old)
                cur_kid, key_hex = cur_kid + 1, secrets.token_hex(32)
                values.update(kid=cur_kid, env_key=key_hex)
            if kid != cur_kid:
                out["key"] = key_hex
            out["kid"] = cur_kid
            offered = refused.get("version") if isinstance(refused, dict) else None
            c.execute(update(provisioned).where(provisioned.c.serial == serial).values(**values))
            if not row["quarantined"] and c.execute(select(box_sites.c.state).where(
                    box_sites.c.box == serial)).scalar() not in (None, "provisioned"):
                set_box_info(c, serial, state="provisioned")     # it holds the current key from now on
            if row["config"] is not None and version != row["config_version"] and offered != row["config_version"]:
                fields = {"config": {"v": row["config_version"], "body": json.loads(row["config"])},
                          "time": int(now)}
                sealed = downlink.seal_answer((self.store, c), (cur_kid, bytes.fromhex(key_hex)), serial, fields)
                out["answer"] = base64.b64encode(sealed).decode()
        if len(out) == 2 and "key" not in out:
            return 204, None
        event(log, logging.INFO, "provisioned", "%s: %s%s", serial, "key %d" % out["kid"] if "key" in out else "",
              " configuration %d" % row["config_version"] if "answer" in out else "", box=serial)
        return 200, out

    def answer_fields(self, box):
        """Fields for a sealed ingest answer: config {"v"} when the box runs another version than the
        cloud holds (and has not refused it); it then asks at once instead of at its next check."""
        r = self._fact(box, provisioned.c.config_version, provisioned.c.running_version,
                       provisioned.c.refused_version)
        if r is None or not r.config_version or r.config_version in (r.running_version, r.refused_version):
            return {}
        return {"config": {"v": r.config_version}}

    # -- clone detection (called by ingest)
    def quarantined(self, box, seq, data):
        """True (and the envelope kept aside) when the identity's uploads are quarantined."""
        r = self._fact(box, provisioned.c.quarantined)
        if r is None or not r.quarantined:
            return False
        with self.engine.begin() as c:
            c.execute(insert(quarantine).values(serial=box, at=time.time(), seq=seq,
                                                body=base64.b64encode(data).decode()))
        return True

    def replayed(self, box, kid, seq):
        """An authentic envelope (its MAC checked) whose seq is not past the last one. One such is a box
        that lost its counter and skips ahead; repeated ones under the same key are two holders of one
        identity whose counters interleave."""
        now = time.time()
        with self.engine.begin() as c:
            row = c.execute(select(provisioned.c.kid, provisioned.c.quarantined)
                            .where(provisioned.c.serial == box)).first()
            if row is None or row.kid != kid:
                return
            reason = "replay:%d" % kid
            c.execute(insert(clone_alerts).values(serial=box, at=now, reason=reason, resolved="count"))
            n = c.execute(select(func.count()).select_from(clone_alerts).where(
                clone_alerts.c.serial == box, clone_alerts.c.reason == reason,
                clone_alerts.c.at > now - CLONE_WINDOW_S)).scalar()
            if n >= CLONE_REPLAYS and not row.quarantined:
                c.execute(delete(clone_alerts).where(clone_alerts.c.serial == box, clone_alerts.c.resolved == "count"))
                c.execute(insert(clone_alerts).values(
                    serial=box, at=now, reason="interleaved sequence numbers under key %d (seq %d)" % (kid, seq)))
                c.execute(update(provisioned).where(provisioned.c.serial == box).values(quarantined=1))
                set_box_info(c, box, state="quarantined")
                event(log, logging.ERROR, "clone", "%s: identity used by two boxes? uploads quarantined", box,
                      box=box, kid=kid, seq=seq)

    # -- HTTP
    async def _json(self, request):
        body = await request.body()
        if len(body) > MAX_BODY:
            return None
        try:
            v = json.loads(body)
        except ValueError:
            return None
        return v if isinstance(v, dict) else None

    async def h_provision(self, request):
        tls = request.scope.get("extensions", {}).get("tls", {})
        req = await self._json(request)
        if req is None:
            return _reply(400, {"ok": False, "reason": "malformed"})
        status, out = await run_in_threadpool(self.provision, tls.get("client_cert"), req)
        return _reply(status, out)

    def _dealer_action(self, request, action, req):
        with self.engine.begin() as conn:
            user = require(request, conn, PERMISSION[action])
        serial = req["serial"]
        if action == "claim":
            site = req.get("site")
            if not isinstance(site, int) or isinstance(site, bool):
                return 400, {"ok": False, "reason": "site: the site's id"}
            return self.claim(user, serial, str(req.get("code", "")), site)
        if action == "config":
            return self.set_config(user, serial, req.get("config"))
        return {"unclaim": self.unclaim, "revoke": self.revoke, "release": self.release,
                "rotate-key": self.rotate_key}[action](user, serial)

    async def h_dealer(self, request):
        req = await self._json(request)
        if req is None or not isinstance(req.get("serial"), str):
            # who asks is checked first: an anonymous caller learns nothing, not even about its JSON
            await run_in_threadpool(self._signed_in, request)
            return _reply(400, {"ok": False, "reason": "malformed"})
        status, out = await run_in_threadpool(self._dealer_action, request, request.url.path.rsplit("/", 1)[-1], req)
        return _reply(status, out)

    def _signed_in(self, request, permission=None):
        with self.engine.begin() as conn:
            return require(request, conn, permission)

    async def h_view(self, request):
        user = await run_in_threadpool(self._signed_in, request)
        return _reply(200, await run_in_threadpool(self.view, request.query_params.get("serial"), user))

    def routes(self):
        return [Route("/v1/provision", self.h_provision, methods=["POST"]),
                Route("/v1/config", self.h_dealer, methods=["PUT", "POST"]),
                Route("/v1/provisioning", self.h_view)] + [
            Route("/v1/" + a, self.h_dealer, methods=["POST"])
            for a in ("claim", "unclaim", "revoke", "release", "rotate-key")]


def client_cert_protocol(base):
    """A uvicorn HTTP protocol class that puts the TLS client certificate (DER, or None) into
    every request's scope as extensions.tls.client_cert (the ASGI TLS extension's place)."""

    class ClientCertProtocol(base):
        def connection_made(self, transport):
            super().connection_made(transport)
            ssl_object = transport.get_extra_info("ssl_object")
            cert = ssl_object.getpeercert(True) if ssl_object is not None else None
            app = self.app

            async def with_cert(scope, receive, send):
                scope.setdefault("extensions", {})["tls"] = {"client_cert": cert}
                return await app(scope, receive, send)

            self.app = with_cert

    return ClientCertProtocol


def either_keys(first, second):
    """Key lookup trying provisioned keys first, then the manufacturing manifest's fixed ones."""
    def keys(device_id, kid):
        return first(device_id, kid) or second(device_id, kid)
    return keys
