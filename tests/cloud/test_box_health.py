"""The box's failure counters ("h" of its uploads, docs/payload.md) travel from the firmware's
uplink through the real service into the store, and come out in /v1/boxes and on the dashboard."""
import asyncio
import json
import os

import cbor2

from cloud import payload, tenancy
from tests.cloud.test_portal import _login, world  # noqa: F401  (the fixture: service, tenants, their boxes)
from tests.cloud.tenants import T0
from fleetbox import uplink
from fleetbox.spool import Spool


def _batch(cycle, h=None):
    rec = {"ip": "10.9.0.1", "serial": "H-P1", "manufacturer": "HP", "model": "Model H", "collected_at": T0 + cycle,
           "uptime_s": 1000 + cycle, "counters": {"total": 100 + cycle}}
    b = {"scan": "full", "cycle": T0 + cycle, "records": [rec]}
    if h is not None:
        b["h"] = h
    return json.dumps(b)


def _health(world, box):
    status, boxes = world.http.get_json("/v1/boxes", world.token("administrator@acme.example"))
    assert status == 200
    return {b["box"]: b["health"] for b in boxes}[box]


def test_an_uploads_failure_counters_are_kept_per_box_and_shown(world, tmp_path):  # noqa: F811
    kit = world.kit
    state = str(tmp_path / "box")
    os.makedirs(state)
    spool, up = Spool(state + "/spool"), uplink.Uplink(kit.cfg(), kit.identity, state)
    assert _health(world, "FBX-X") is None          # the tenants' boxes never reported any

    spool.put(_batch(1, {"start": 2, "upload": 1}))
    assert asyncio.run(up.drain(spool)) == 1
    h = _health(world, kit.serial)   # an unclaimed box: its keys' dealer's administrators see it
    assert h["counters"] == {"start": 2, "upload": 1} and h["reported"] > 0, h

    # a batch without failures keeps what was said last; the next report replaces it
    spool.put(_batch(2))
    spool.put(_batch(3, {"collect": 1}))
    assert asyncio.run(up.drain(spool)) == 2
    assert _health(world, kit.serial)["counters"] == {"collect": 1}

    status, headers, _ = _login(world, "administrator@acme.example")
    status, _, body = world.http.request("GET", "/portal/", cookie=headers["set-cookie"].split(";")[0])
    table = body.split(b'<table id="boxes">', 1)[1]
    assert status == 200 and b"<th>Failed cycles</th>" in table

    def row(box):
        return table.split(b"<td>%s</td>" % box.encode(), 1)[1].split(b"</tr>", 1)[0]
    assert b"collect 1</span>" in row(kit.serial), row(kit.serial)
    assert b'<td class="failures">\xe2\x80\x94</td>' in row("FBX-X"), row("FBX-X")
    up.close()


def test_the_version_2_payload_keeps_h_and_a_malformed_one_is_ignored(world):  # noqa: F811
    body = cbor2.dumps({"v": 2, "u": 7}) + cbor2.dumps({"s": 0, "c": T0, "r": [], "h": {"spool": 3}})
    head, batch = payload.decode_payload(body)
    assert batch["h"] == {"spool": 3}
    store = world.store
    bad = ({"spool": -1}, {"spool": True}, {"x" * 33: 1}, {str(i): 1 for i in range(33)}, ["spool", 1], "x")
    for seq, h in enumerate(bad, 10):
        assert store.ingest("FBX-Y", seq, seq, dict(batch, h=h, seen=[], base=None), "liberty", 10)[0]   # stored
    with store.engine.connect() as c:
        assert tenancy.box_health_of(c, ["FBX-Y"]) == {}
    store.ingest("FBX-Y", 100, 100, dict(batch, seen=[], base=None), "liberty", 10)
    with store.engine.connect() as c:
        assert tenancy.box_health_of(c, ["FBX-Y"])["FBX-Y"]["counters"] == {"spool": 3}
