"""The HTTP API of one endpoint (liberty or rescue) as a Starlette application.

POST /v1/ingest   body: an envelope (docs/envelope.md) holding a CBOR payload (docs/payload.md)
GET  /v1/health   {"ok": true} once the database answers (for a load balancer)
The read API (cloud/readapi.py), the CSV export (cloud/export.py) and the dashboard
(cloud/portal) are mounted here too; they need a signed-in caller (cloud/auth.py).

Every answer to an envelope whose MAC checked out is sealed for its box (docs/downlink.md):
200 stored or duplicate, 409 replay/out-of-window, 400 bad-padding/bad-payload, each a CBOR map
bound to the envelope by `re`. What cannot be sealed (no key, bad MAC, not an envelope, HTTP
limits) gets a plain 4xx {"ok": false, "reason": ...}; before the MAC holds, that answer does not
tell whether a box or key id exists (PUBLIC_REASON), the log and `rejects` keep the precise
reason. Every refusal gets a log line and a row in `rejects` (the newest rows are kept); a bug
costs its request a 500, never the service. Replies to the box carry as few header bytes as the
box needs (no Server, Date or, for ingest, Content-Type): they travel on every upload.
"""
import asyncio
import json
import logging
import time
from contextlib import nullcontext

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Route
from sqlalchemy import text

from cloud import downlink
from cloud import portal
from cloud import rescue, updates
from cloud.envelope import CloudEnvelopeError, Opener, parse_header
from cloud.export import Export
from cloud.ingest_asgi import IngestFastPath
from cloud.ingest_group import GroupWriter
from cloud.logs import event
from cloud.payload import PayloadError, decode_payload
from cloud.readapi import ReadApi
from cloud.store import SeqReplay

log = logging.getLogger("fleetbox.cloud")
STATUS = {"malformed": 400, "bad-padding": 400, "unsupported-version": 400, "bad-payload": 400,
          "unknown-key": 403, "bad-mac": 403, "replay": 409, "out-of-window": 409,
          "quarantined": 403, "length-required": 411, "too-large": 413, "too-slow": 408, "unauthenticated": 403}
# What an anonymous caller is told: unknown-key against bad-mac would say which serials and kids exist.
PUBLIC_REASON = {"unknown-key": "unauthenticated", "bad-mac": "unauthenticated"}


class Limits:
    """Request limits: an upload is at most max_body bytes and must arrive within body_timeout_s
    (a slow sender holds a connection, not a worker); keep_alive_s closes idle connections."""

    def __init__(self, max_body=1 << 20, body_timeout_s=30.0, keep_alive_s=75.0):
        self.max_body = int(max_body)
        self.body_timeout_s = float(body_timeout_s)
        self.keep_alive_s = float(keep_alive_s)


def _body(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def _reply(status, obj, json_type=False, close=False):
    return Response(_body(obj), status, headers={"connection": "close"} if close else None,
                    media_type="application/json" if json_type else None)


class _NoReplayCheck:
    def last_seq(self, box):
        return None


class Endpoint:
    """One named endpoint's handlers over the shared store."""

    def __init__(self, name, store, keys, window=86400, limits=None, guard=None):
        self.name, self.store = name, store
        self.guard = guard      # clone detection and quarantine (cloud/provision.py), or None
        self.limits = limits or Limits()
        self.opener = Opener(keys, store, window)
        # Opens an authentic envelope that repeats the box's last sequence number: whether it is a
        # copy of the stored upload or a new batch is the store's decision (store_upload), not the number's.
        self.reopener = Opener(keys, _NoReplayCheck(), window)
        # hook(box, kid) -> more fields for an upload's answer (an update offer); hook.many(pairs), where
        # a hook has it, answers a group's (box, kid) pairs at once -> {box: fields}
        self.answer_hooks = []
        # PostgreSQL: concurrent uploads stored in one transaction each (cloud/ingest_group.py)
        self.group = GroupWriter(self) if getattr(store, "dialect", None) == "postgresql" else None

    def group_size(self, n):
        """At most n uploads per transaction on PostgreSQL; 0: each in its own."""
        if self.group is not None and n:
            self.group.max_group = n
        elif n == 0:
            self.group = None

    # -- ingest
    async def ingest(self, request):
        client = request.client.host if request.client else "-"
        return await self.ingest_body(request.headers.get("content-length"), client, request.stream())

    async def ingest_body(self, length, client, chunks):
        """The answer to an upload: `length` its Content-Length header (or None), `chunks` its body
        as it arrives (an async iterator that raises ClientDisconnect)."""
        t0 = time.monotonic()
        try:
            if length is None or not length.isdigit():
                return await self._arefuse("length-required", "no Content-Length", client, close=True)
            length = int(length)
            if not 0 < length <= self.limits.max_body:
                return await self._arefuse("too-large", "body of %d bytes (limit %d)" % (length, self.limits.max_body),
                                           client, close=True)
            try:
                async with asyncio.timeout(self.limits.body_timeout_s):    # a timer, not a task per body
                    data = await self._read(chunks, length)
            except TimeoutError:
                return await self._arefuse("too-slow", "body not complete within %g s" % self.limits.body_timeout_s,
                                           client, close=True)
            except ClientDisconnect:
                event(log, logging.INFO, "disconnect", "%s: %s went away inside a request", self.name, client,
                      endpoint=self.name, client=client)
                return Response(b"", 400, headers={"connection": "close"})
            if data is None:
                return await self._arefuse("too-large", "body longer than its Content-Length", client, close=True)
            if self.group is not None:
                return await self.group.submit(data, client, t0)
            return await run_in_threadpool(self._process, data, client, t0)
        except Exception as e:   # a bug must cost one request, never the service
            return self.internal_error(client, e)

    @staticmethod
    async def _read(chunks, length):
        parts, got = [], 0
        async for chunk in chunks:
            got += len(chunk)
            if got > length:
                return None
            parts.append(chunk)
        if got < length:
            raise ClientDisconnect()
        return b"".join(parts)

    async def _arefuse(self, reason, detail, client, close=False):
        return await run_in_threadpool(self._refuse, reason, detail, client, close)

    def _refuse(self, reason, detail, client, close=False, header=None, **extra):
        """A refusal: sealed for the box when `header` is an authenticated envelope's, else plain."""
        event(log, logging.WARNING, "refused", "%s refused an upload from %s: %s (%s)",
              self.name, client, reason, detail,
              endpoint=self.name, client=client, reason=reason, detail=detail, status=STATUS.get(reason, 400))
        self.store.reject(self.name, reason, detail)
        if header is not None:
            return self._sealed(STATUS.get(reason, 400), header, dict({"ok": False, "reason": reason}, **extra))
        public = PUBLIC_REASON.get(reason, reason)
        return _reply(STATUS.get(public, 400), dict({"ok": False, "reason": public}, **extra), close=close)

    def _sealed(self, status, header, fields, down_seq=None):
        """The answer to an authenticated envelope, sealed for its box and bound to it by `re`."""
        box, kid = header["device_id"], header["kid"]
        fields = dict(fields, re=header["seq"], time=int(time.time()))
        if self.guard:
            fields.update(self.guard.answer_fields(box))     # a newer configuration (docs/provisioning.md)
        body = downlink.seal_answer(self.store, self.opener.keys, box, fields, kid=kid, seq=down_seq)
        return Response(body, status)

    def _duplicate(self, header, client, upload=None):
        box = header["device_id"]
        event(log, logging.INFO, "duplicate", "%s acknowledged a copy of the last envelope from %s", self.name, box,
              endpoint=self.name, box=box, client=client)
        fields = {"ok": True, "duplicate": True}
        if upload is not None:
            fields["upload"] = upload
        return self._sealed(200, header, fields)

    def reading(self, envelopes):
        """A block in which what the guard knows of the envelopes' boxes is read once for all of them
        (Provisioning.reading), not once per question."""
        if self.guard is None:
            return nullcontext()
        boxes = set()
        for data in envelopes:
            try:
                boxes.add(parse_header(data)["device_id"])
            except CloudEnvelopeError:
                pass    # refused when it is opened
        return self.guard.reading(boxes)

    def _process(self, data, client, t0):
        with self.reading([data]):
            return self._process_read(data, client, t0)

    def _process_read(self, data, client, t0):
        opened = self.open_upload(data, client, self.opener)
        if isinstance(opened, Response):
            return opened
        header, head, batch = opened
        try:
            outcome = self.store.ingest(header["device_id"], header["seq"], head["upload"], batch, self.name,
                                        len(data), head["epoch"])
        except SeqReplay as e:   # another worker got a copy or a later envelope in first
            outcome = e
        return self.answer_upload(header, head, batch, data, client, t0, outcome)

    def open_upload(self, data, client, opener):
        """(header, upload header, batch) of an envelope to store, or the Response refusing it.
        opener: self.opener, or self.reopener when the store checks the sequence number itself."""
        try:
            try:
                header, plaintext = opener.open(data)
            except CloudEnvelopeError as e:
                if not e.duplicate:
                    raise
                header, plaintext = self.reopener.open(data)
        except CloudEnvelopeError as e:
            if e.reason == "replay":
                if self.guard and e.header.get("seq") is not None:
                    self.guard.replayed(e.header["device_id"], e.header["kid"], e.header["seq"])
                # Only a holder of the box's key gets this far (the MAC was checked): tell it where
                # its sequence numbers must continue, so a box whose flash was erased recovers.
                return self._refuse(e.reason, str(e), client, header=e.header,
                                    last_seq=self.store.last_seq(e.header["device_id"]))
            if e.reason in ("out-of-window", "bad-padding"):
                # Authenticated too: a box whose clock is off learns the time from this refusal.
                return self._refuse(e.reason, str(e), client, header=e.header)
            return self._refuse(e.reason, str(e), client)
        try:
            head, batch = decode_payload(plaintext)
        except PayloadError as e:
            return self._refuse("bad-payload", str(e), client, header=header)
        box = header["device_id"]
        if self.guard and self.guard.quarantined(box, header["seq"], data):
            return self._refuse("quarantined", "uploads of %s wait for a person's decision" % box, client)
        return header, head, batch

    def group_fields(self, pairs):
        """{box: more answer fields} from answer_hooks for a group's (box, kid) pairs: one call per
        hook that takes a group, else one per box."""
        out = {box: {} for box, _ in pairs}
        for hook in self.answer_hooks:
            many = getattr(hook, "many", None)
            got = many(pairs) if many else {box: hook(box, kid) for box, kid in pairs}
            for box, fields in got.items():
                out[box].update(fields or {})
        return out

    def answer_upload(self, header, head, batch, data, client, t0, outcome, fields=None):
        """The answer to an opened upload once the store decided: outcome is Store.ingest's
        (fresh, resync, down_seq) or the SeqReplay it raised. fields: what group_fields gave
        for the box, else the answer_hooks are asked here."""
        box = header["device_id"]
        if isinstance(outcome, SeqReplay):
            if outcome.duplicate:
                return self._duplicate(header, client)
            if self.guard:
                self.guard.replayed(box, header["kid"], header["seq"])
            return self._refuse("replay", "seq %d %s" % (header["seq"], outcome), client, header=header,
                                last_seq=outcome.last)
        fresh, resync, down_seq = outcome
        n = len(batch["records"]) + len(batch["seen"])
        event(log, logging.INFO, "stored", "%s stored upload %d from %s: %d records%s%s",
              self.name, head["upload"], box, n,
              "" if fresh else " (already stored)", " resync %s" % resync if resync else "",
              endpoint=self.name, box=box, upload=head["upload"], seq=header["seq"], records=n, fresh=fresh,
              resync=resync or None, bytes=len(data), ms=round((time.monotonic() - t0) * 1000, 2))
        reply = {"ok": True, "upload": head["upload"]}
        if not fresh:
            reply["duplicate"] = True
        if resync:
            # The box takes at most 256 device numbers; beyond that everything in full is cheaper.
            reply["resync"] = resync if resync is True or len(resync) <= 256 else True
        if fields is not None:
            reply.update(fields)
        else:
            for hook in self.answer_hooks:
                reply.update(hook(box, header["kid"]) or {})
        return self._sealed(200, header, reply, down_seq)

    def internal_error(self, client, e):
        """A bug costs its request a 500, never the service."""
        log.exception("%s failed on an upload from %s", self.name, client,
                      extra={"event": "internal-error", "fields": {"endpoint": self.name, "client": client}})
        return _reply(500, {"ok": False, "reason": "internal", "detail": type(e).__name__}, close=True)

    def health(self, request):
        with self.store.engine.connect() as c:
            c.execute(text("SELECT 1"))
        return _reply(200, {"ok": True, "endpoint": self.name}, json_type=True)


async def _http_error(request, exc):
    reason = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, exc.detail)
    return Response(_body({"ok": False, "reason": reason}), exc.status_code, headers=exc.headers,
                    media_type="application/json")


def create_app(name, store, keys, window=86400, limits=None, provisioning=None):
    """The ASGI application of endpoint `name` (liberty, rescue, ...) over `store`."""
    ep = Endpoint(name, store, keys, window, limits, provisioning)
    routes = [Route("/v1/ingest", ep.ingest, methods=["POST"]), Route("/v1/health", ep.health)]
    routes += ReadApi(store).routes() + Export(store).routes() + portal.routes(store)
    routes += provisioning.routes() if provisioning else []     # docs/provisioning.md
    rescue.mount(routes, store, keys, provisioning, updates.mount(routes, ep, store, keys, window))  # docs/update-*
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.endpoint = ep
    return IngestFastPath(app, ep)     # POST /v1/ingest without Starlette's layers (cloud/ingest_asgi.py)
