"""The ASGI fast path for POST /v1/ingest (cloud/ingest_asgi.py) answers every kind of upload as the
Starlette route behind it does: status, headers, the sealed answer's fields, the refusal logged
and kept in `rejects`; other paths and methods still reach the application."""
import asyncio
import logging
import time

from cloud import downlink
from cloud.app import Limits, create_app
from cloud.ingest_asgi import IngestFastPath
from cloud.store import Store
from tests.cloud.service import _firmware, seal_uploads

BOX = "FBX-A01"
KEY = bytes(range(32))
SLOW = object()     # a body that never arrives


def keys(box, kid):
    return KEY if (box, kid) == (BOX, 1) else None


async def call(app, method, path, headers, body):
    """One request through `app` in this process -> (status, headers, body)."""
    messages = [] if body is SLOW else [{"type": "http.request", "body": body[:100], "more_body": True},
                                        {"type": "http.request", "body": body[100:], "more_body": False}]

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "https",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 443)}
    await app(scope, receive, send)
    start = sent[0]
    return start["status"], sorted(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def answer(body):
    """A sealed answer's fields without its clock, or a plain refusal's JSON."""
    if body[:3] == b"FBE":
        fields = downlink.open_answer((1, KEY), BOX, body)[1]
        fields.pop("time")
        return fields
    return body


def exchange(app, caplog):
    """Every kind of upload, in order, through `app` -> [(status, headers, answer, events logged)]."""
    good = seal_uploads(BOX, KEY, 1, 3)
    _, env = _firmware()
    junk = env.seal(KEY, 1, BOX, 9, int(time.time()), b"\xff\x00junk")
    stranger = env.seal(bytes(32), 1, "FBX-NOBODY", 1, int(time.time()), b"x")

    def post(body, length=True):
        headers = [(b"host", b"liberty.fleetbox.test")]
        if length and body is not SLOW:
            headers.append((b"content-length", str(len(body)).encode()))
        elif body is SLOW:
            headers.append((b"content-length", b"4000"))
        return "POST", "/v1/ingest", headers, body

    requests = [post(good[0]), post(good[0]), post(good[2]), post(good[1]),      # stored, duplicate, stored, replay
                post(junk), post(b"not an envelope at all"), post(stranger),    # bad payload, malformed, unknown
                post(b"x" * 9000), post(good[2], length=False), post(SLOW),      # too large, no length, too slow
                post(good[0][:-10] + b"0123456789"),                             # bad MAC
                ("GET", "/v1/ingest", [], b""), ("POST", "/v1/health", [], b"")]
    out = []
    for req in requests:
        caplog.clear()
        status, headers, body = asyncio.run(call(app, *req))
        events = [getattr(r, "event", None) or r.getMessage()[:20] for r in caplog.records]
        out.append((status, headers, answer(body), events))
    return out


def test_the_fast_path_answers_as_the_starlette_route(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="fleetbox.cloud")
    limits = Limits(max_body=8192, body_timeout_s=0.3)
    results, rejects = [], []
    for name in ("fast", "starlette"):
        store = Store("sqlite:///%s" % (tmp_path / ("%s.sqlite" % name)))
        try:
            app = create_app("liberty", store, keys, limits=limits)
            assert isinstance(app, IngestFastPath)
            results.append(exchange(app if name == "fast" else app.app, caplog))
            rejects.append([r["reason"] for r in store.rejects()])
            assert {x["box"]: x["uploads"] for x in store.boxes()} == {BOX: 2}
        finally:
            store.close()
    fast, plain = results
    assert [r[0] for r in fast] == [200, 200, 200, 409, 400, 400, 403, 413, 411, 408, 403, 405, 405]
    assert fast == plain
    assert fast[0][2]["ok"] is True and fast[1][2]["duplicate"] is True and fast[3][2]["last_seq"] == 3
    assert (b"connection", b"close") in fast[7][1] and fast[9][2] == b'{"ok":false,"reason":"too-slow"}'
    assert rejects[0] == rejects[1] == ["replay", "bad-payload", "malformed", "unknown-key", "too-large",
                                        "length-required", "too-slow", "bad-mac"]
