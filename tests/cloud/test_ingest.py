"""The service's ingest and read API over real HTTPS on loopback, on SQLite and on PostgreSQL: the
box's own uplink (firmware modules on CPython) and envelopes, 409 recovery, resync, limits, logs."""
import asyncio
import itertools
import json
import logging
import os
import socket
import ssl
import time

import pytest

from cloud import accounts, tenancy
from cloud.app import Limits
from cloud.logs import JsonFormatter, event
from cloud.schema import devices
from fleetbox import cbor, envelope, https
from simulator import pki
from tests.cloud.tenants import http_for
from tests.interop.test_uplink import T0, box, put_cycle, same, sample_records, stored
from tests.uplink_kit import Kit

run = asyncio.run
_hosts = itertools.count(10)


@pytest.fixture
def kit(tmp_path, database):
    d = tmp_path / "cloud"
    d.mkdir()
    h = next(_hosts)
    k = Kit(str(d), ("127.77.40.%d" % h, 0), ("127.77.41.%d" % h, 0), database=database,
            limits=Limits(max_body=65536, body_timeout_s=1.0)).start()
    yield k
    k.stop()


def _url(kit, path, name="liberty"):
    return "https://%s.fleetbox.test:%d%s" % (name, kit.cloud.receivers[name].port, path)


def get(kit, path):
    """GET as the administrator of the dealer that owns the device keys (the box is unclaimed)."""
    return http_for(kit).get_json(path, admin_token(kit))


def admin_token(kit):
    if not hasattr(kit, "admin_token"):
        with kit.store.engine.begin() as c:
            uid = accounts.add_user(c, tenancy.add_dealer(c, "Acme", owns_keys=True), "admin@acme.example",
                                    "not a secret", "administrator")
            kit.admin_token = accounts.issue(c, uid, "token")
    return kit.admin_token


def post(kit, body, name="liberty"):
    status, reply = https.request("POST", _url(kit, "/v1/ingest", name), body, pki.der(kit.ca[1]),
                                  [bytes.fromhex(p) for p in kit.pins()], kit.cloud.receivers[name].address)
    return status, kit.answer(reply)


def sealed(kit, seq, upload, n=2):
    pt = (cbor.dumps({"v": 1, "upload": upload})
          + cbor.dumps({"scan": "full", "cycle": T0, "records": sample_records(0, n)}))
    return envelope.seal(bytes.fromhex(kit.identity["device_key"]), 1, kit.serial, seq, int(time.time()), pt)


def test_the_box_drains_deltas_and_the_cloud_rebuilds_full_records(kit, tmp_path):
    spool, up = box(kit, tmp_path)
    for cycle in range(3):
        recs = put_cycle(spool, cycle)
        assert run(up.drain(spool)) == 1
        assert same(stored(kit), {r["serial"]: r for r in recs})
    hist = kit.store.history(kit.serial, "SN-0003")
    assert [h["collected_at"] for h in hist] == [T0 + c * 300 + 3 for c in (2, 1, 0)]
    with kit.store.engine.begin() as c:                                   # the cloud lost one device
        c.execute(devices.delete().where(devices.c.device == "SN-0002"))
    put_cycle(spool, 3)
    run(up.drain(spool))
    assert up.delta.devices["SN-0002"] == {"n": 3}                        # told to resync
    recs = put_cycle(spool, 4)
    run(up.drain(spool))
    assert same(stored(kit), {r["serial"]: r for r in recs})
    assert [u["upload"] for u in kit.store.uploads(kit.serial)] == [1, 2, 3, 4, 5]


def test_a_lost_acknowledgement_and_a_lost_sequence_number_both_recover(kit, tmp_path):
    spool, up = box(kit, tmp_path)
    put_cycle(spool, 0)
    ident, data = spool.peek()
    run(up.send(ident, json.loads(data), spool.epoch))   # delivered, but the box "crashed" before spool.ack
    spool2, up2 = box(kit, tmp_path)
    assert run(up2.drain(spool2)) == 1 and up2.stats["duplicates"] == 1
    assert len(kit.store.history(kit.serial, "SN-0001")) == 1
    os.remove(str(tmp_path / "box" / "uplink.seq"))      # the box forgot its sequence number: 409 tells it
    spool3, up3 = box(kit, tmp_path)
    put_cycle(spool3, 1)
    assert run(up3.drain(spool3)) == 1 and up3.seq > 2
    assert [u["upload"] for u in kit.store.uploads(kit.serial)] == [1, 2]


def test_replies_to_replayed_tampered_and_garbage_envelopes(kit):
    first, second = sealed(kit, 1, 1), sealed(kit, 2, 2)
    assert post(kit, first)[0] == 200 and post(kit, second, "rescue")[0] == 200
    assert post(kit, first) == (409, {"ok": False, "reason": "replay", "last_seq": 2, "sealed": True})
    assert post(kit, second) == (200, {"ok": True, "duplicate": True, "sealed": True})     # the other endpoint's copy
    flipped = bytearray(sealed(kit, 3, 3))
    flipped[60] ^= 1
    assert post(kit, bytes(flipped)) == (403, {"ok": False, "reason": "unauthenticated"})
    assert post(kit, b"not an envelope at all") == (400, {"ok": False, "reason": "malformed"})
    key = bytes.fromhex(kit.identity["device_key"])
    junk = envelope.seal(key, 1, kit.serial, 3, int(time.time()), b"\xff\x00junk")
    assert post(kit, junk) == (400, {"ok": False, "reason": "bad-payload", "sealed": True})
    assert [r["reason"] for r in kit.store.rejects()] == ["replay", "bad-mac", "malformed", "bad-payload"]
    assert [u["endpoint"] for u in kit.store.uploads(kit.serial)] == ["liberty", "rescue"]


def test_read_api(kit):
    assert post(kit, sealed(kit, 1, 1, n=3))[0] == 200
    assert post(kit, sealed(kit, 2, 2, n=3))[0] == 200
    assert http_for(kit).get_json("/v1/boxes") == (401, {"ok": False, "reason": "unauthenticated"})
    status, boxes = get(kit, "/v1/boxes")
    assert status == 200 and [(b["box"], b["last_seq"], b["devices"], b["uploads"], b["last_endpoint"])
                              for b in boxes] == [(kit.serial, 2, 3, 2, "liberty")]
    status, devs = get(kit, "/v1/devices?box=%s" % kit.serial)
    assert status == 200 and [d["serial"] for d in devs] == ["SN-0000", "SN-0001", "SN-0002"]
    assert get(kit, "/v1/device?box=%s&device=SN-0001" % kit.serial)[1]["model"] == "LaserJet M501"
    assert get(kit, "/v1/device?box=%s&device=nope" % kit.serial) == (404, {"ok": False, "reason": "no such device"})
    assert len(get(kit, "/v1/history?box=%s&device=SN-0001&limit=1" % kit.serial)[1]) == 1
    assert len(get(kit, "/v1/history?box=%s&device=SN-0001" % kit.serial)[1]) == 2
    assert get(kit, "/v1/history?box=%s&device=SN-0001&limit=x" % kit.serial)[0] == 400
    assert get(kit, "/v1/nothing") == (404, {"ok": False, "reason": "not-found"})
    assert get(kit, "/v1/health") == (200, {"ok": True, "endpoint": "liberty"})


def _raw(kit, head, body=b"", wait=5.0):
    """Send raw bytes over TLS to liberty; the status line and headers that come back (or b"")."""
    lib = kit.cloud.receivers["liberty"]
    ctx = ssl.create_default_context(cadata=pki.der(kit.ca[1]))
    with socket.create_connection((lib.address, lib.port), timeout=wait) as raw:
        with ctx.wrap_socket(raw, server_hostname="liberty.fleetbox.test") as s:
            s.sendall(head + body)
            out = b""
            try:
                while b"\r\n\r\n" not in out:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    out += chunk
            except socket.timeout:
                pass
            return out


def test_oversized_slow_and_lengthless_requests_are_refused_and_the_service_goes_on(kit, caplog):
    caplog.set_level(logging.INFO, logger="fleetbox.cloud")
    big = _raw(kit, b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n", b"x" * 1000)
    assert big.startswith(b"HTTP/1.1 413 ") and b"connection: close" in big.lower()
    t0 = time.monotonic()
    slow = _raw(kit, b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n", b"y" * 10)
    assert slow.startswith(b"HTTP/1.1 408 ") and time.monotonic() - t0 < 4      # limit 1 s
    bare = _raw(kit, b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"5\r\nhello\r\n0\r\n\r\n")
    assert bare.startswith(b"HTTP/1.1 411 ")
    assert [r["reason"] for r in kit.store.rejects()] == ["too-large", "too-slow", "length-required"]
    refused = [r for r in caplog.records if getattr(r, "event", None) == "refused"]
    assert [r.fields["status"] for r in refused] == [413, 408, 411]
    assert post(kit, sealed(kit, 1, 1))[0] == 200                                  # still serving


def test_log_lines_are_one_json_object_each():
    lg = logging.getLogger("fleetbox.cloud.test")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    lg.addHandler(handler)
    lg.setLevel(logging.INFO)
    try:
        event(lg, logging.INFO, "stored", "stored upload %d from %s", 7, "FBX-1", box="FBX-1", upload=7)
        # what orjson writes differently or not at all: text beyond ASCII, a huge integer, an object
        event(lg, logging.INFO, "odd", "caf\u00e9 %s", "\u2603\n", big=1 << 70, obj=Ellipsis, nan=float("nan"))
        try:
            raise KeyError("boom")
        except KeyError:
            lg.exception("failed", extra={"event": "internal-error", "fields": {"client": "127.0.0.1"}})
    finally:
        lg.removeHandler(handler)
    lines = [JsonFormatter().format(r) for r in records]
    assert all("\n" not in line for line in lines)
    first, odd, second = (json.loads(line) for line in lines)
    assert odd["msg"] == "caf\u00e9 \u2603\n" and odd["big"] == 1 << 70 and odd["obj"] == "Ellipsis"
    assert first["msg"] == "stored upload 7 from FBX-1" and first["event"] == "stored"
    assert ((first["box"], first["upload"], first["level"], first["logger"])
            == ("FBX-1", 7, "info", "fleetbox.cloud.test"))
    assert second["event"] == "internal-error" and "KeyError" in second["exc"] and second["client"] == "127.0.0.1"
