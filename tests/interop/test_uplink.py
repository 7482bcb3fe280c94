"""The box's uplink (firmware, here on CPython) against the real cloud over real HTTPS on loopback:
deltas rebuilt into full records, keep-alive, failover and return, outages, impostors, a proxy."""
import asyncio
import itertools
import json
import os
import time

import pytest

from cloud.schema import devices
from fleetbox import envelope, https, uplink
from fleetbox.spool import Spool
from simulator import pki
from tests.uplink_kit import Impostor, Kit, Relay

T0 = int(time.time()) - 3600
run = asyncio.run
_hosts = itertools.count(10)


def sample_records(cycle, n=8, scan="full"):
    """Records shaped like device-record.md; counters move every cycle, a toner every third."""
    out = []
    for i in range(n):
        at = T0 + cycle * 300 + i
        rec = {"ip": "192.0.2.%d" % (10 + i), "port": 161, "serial": "SN-%04d" % i, "mac": "00:11:22:33:44:%02x" % i,
               "manufacturer": "HP", "model": "LaserJet M50%d" % i, "hostname": "prn%d" % i,
               "sys_descr": "HP ETHERNET MULTI-ENVIRONMENT,ROM none,JETDIRECT,JD153", "location": "floor %d" % i,
               "uptime_s": 86400 + cycle * 300 + (i if cycle % 2 else 0), "collected_at": at, "scan": scan,
               "snmp_version": "2c", "typology": "mfp", "technology": "laser", "color": i % 2 == 0,
               "counters": {"total": 10000 * i + 37 * cycle, "mono": 8000 * i + 30 * cycle, "color": 7 * cycle},
               "supplies": [{"index": 1, "kind": "toner", "color": "black", "description": "Black Cartridge",
                             "unit": "percent", "max": 100, "level": 90 - cycle // 3, "percent": 90 - cycle // 3,
                             "state": "ok"}],
               "status": {"device": "running", "printer": "idle", "errors": [], "display": ["Ready"], "alerts": []}}
        if cycle >= 2 and i == 3:
            del rec["location"]                 # a field that went away
            rec["status"]["errors"] = ["lowPaper"]
        out.append(rec)
    return out


def put_cycle(spool, cycle, n=8, scan="full"):
    recs = sample_records(cycle, n, scan)
    spool.put(json.dumps({"scan": scan, "cycle": T0 + cycle * 300, "records": recs}))
    return recs


@pytest.fixture
def kit_dir(tmp_path):
    d = tmp_path / "cloud"
    d.mkdir()
    return str(d)


def _kit(kit_dir):
    h = next(_hosts)
    return Kit(kit_dir, ("127.77.5.%d" % h, 0), ("127.77.6.%d" % h, 0)).start()   # free ports


@pytest.fixture
def cloud(kit_dir):
    k = _kit(kit_dir)
    yield k
    k.stop()


def box(cloud, tmp_path, **cfg):
    state = str(tmp_path / "box")
    os.makedirs(state, exist_ok=True)
    c = cloud.cfg(**cfg)
    return Spool(state + "/spool"), uplink.Uplink(c, cloud.identity, state)


def stored(cloud):
    return {r["serial"]: r for r in cloud.store.devices(cloud.serial)}


def same(got, want):
    """Records equal, but for uptime_s, which the cloud rebuilds to within 1 s (docs/payload.md)."""
    if isinstance(want, dict) and want and all(isinstance(v, dict) for v in want.values()) and "ip" not in want:
        return got.keys() == want.keys() and all(same(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return len(got) == len(want) and all(same(g, w) for g, w in zip(got, want))
    g, w = dict(got), dict(want)
    gu, wu = g.pop("uptime_s", None), w.pop("uptime_s", None)
    ok = g == w and (gu == wu or (gu is not None and wu is not None and abs(gu - wu) <= 1))
    if not ok:
        print("differs:", {k: (g.get(k), w.get(k)) for k in set(g) | set(w) if g.get(k) != w.get(k)}, gu, wu)
    return ok


def test_deltas_travel_and_the_cloud_rebuilds_full_records(cloud, tmp_path):
    spool, up = box(cloud, tmp_path)
    sizes = []
    for cycle in range(4):
        recs = put_cycle(spool, cycle)
        before = up.stats["bytes_out"]
        assert run(up.drain(spool)) == 1
        sizes.append(up.stats["bytes_out"] - before)
        assert same(stored(cloud), {r["serial"]: r for r in recs})   # full state
    # after first sight only what changed travels (both compressed: first sight shrinks the most)
    assert sizes[1] * 2 < sizes[0]
    hist = cloud.store.history(cloud.serial, "SN-0003")
    assert [h["collected_at"] for h in hist] == [T0 + c * 300 + 3 for c in (3, 2, 1, 0)]
    assert same(hist[0], sample_records(3)[3]) and hist[-1] == sample_records(0)[3]
    assert up.stats["handshakes"] == 4       # one TLS session per drain
    assert len(spool) == 0


def test_partial_scans_merge_without_losing_fields(cloud, tmp_path):
    spool, up = box(cloud, tmp_path)
    put_cycle(spool, 0)
    counters = [{k: r[k] for k in ("ip", "port", "serial", "mac", "uptime_s", "collected_at", "counters")}
                for r in sample_records(1)]
    spool.put(json.dumps({"scan": "counters", "cycle": T0 + 300, "records": counters}))
    assert run(up.drain(spool)) == 2
    want = {r["serial"]: dict(r, counters=c["counters"], uptime_s=c["uptime_s"], collected_at=c["collected_at"])
            for r, c in zip(sample_records(0), counters)}
    assert same(stored(cloud), want)


def test_cloud_asks_for_full_records_when_its_state_differs(cloud, tmp_path):
    spool, up = box(cloud, tmp_path)
    put_cycle(spool, 0)
    run(up.drain(spool))
    with cloud.store.engine.begin() as c:                                 # the cloud lost one device
        c.execute(devices.delete().where(devices.c.device == "SN-0002"))
    put_cycle(spool, 1)
    run(up.drain(spool))
    assert up.delta.devices["SN-0002"] == {"n": 3}                          # told to resync
    recs = put_cycle(spool, 2)
    run(up.drain(spool))
    assert same(stored(cloud), {r["serial"]: r for r in recs})


def test_cloud_down_many_cycles_then_back_every_record_once(cloud, tmp_path):
    spool, up = box(cloud, tmp_path)
    put_cycle(spool, 0)
    run(up.drain(spool))
    for r in cloud.cloud.receivers.values():
        r.stop()
    for cycle in range(1, 13):
        put_cycle(spool, cycle)
        with pytest.raises(uplink.UplinkError):
            run(up.drain(spool))
    assert len(spool) == 12 and up.backoff_n == 12 and not up.due()
    for r in cloud.cloud.receivers.values():
        r.start()
    assert run(up.drain(spool)) == 12 and len(spool) == 0
    uploads = cloud.store.uploads(cloud.serial)
    assert [u["upload"] for u in uploads] == list(range(1, 14))
    for i in range(8):
        hist = cloud.store.history(cloud.serial, "SN-%04d" % i, limit=1000)
        assert [h["collected_at"] for h in reversed(hist)] == [T0 + c * 300 + i for c in range(13)]
        assert same(list(reversed(hist)), [sample_records(c)[i] for c in range(13)])


def test_lost_acknowledgement_is_not_stored_twice(cloud, tmp_path):
    spool, up = box(cloud, tmp_path)
    put_cycle(spool, 0)
    ident, data = spool.peek()
    run(up.send(ident, json.loads(data), spool.epoch))   # delivered, but the box "crashed" before spool.ack
    spool2, up2 = box(cloud, tmp_path)          # reboot: the same batch is still spooled
    assert run(up2.drain(spool2)) == 1 and up2.stats["duplicates"] == 1
    assert len(cloud.store.history(cloud.serial, "SN-0001")) == 1


def test_failover_to_rescue_and_back_to_liberty(cloud, tmp_path):
    spool, up = box(cloud, tmp_path, return_after_s=1)
    cloud.cloud.receivers["liberty"].stop()
    put_cycle(spool, 0)
    run(up.drain(spool))
    assert up.stats["last_endpoint"] == "rescue" and up.stats["failovers"] == 1
    put_cycle(spool, 1)
    run(up.drain(spool))                             # stays on rescue: no retry of liberty every upload
    assert up.stats["last_endpoint"] == "rescue" and up.stats["failovers"] == 1
    cloud.cloud.receivers["liberty"].start()
    time.sleep(1.1)
    put_cycle(spool, 2)
    run(up.drain(spool))
    assert up.stats["last_endpoint"] == "liberty"
    assert [u["endpoint"] for u in cloud.store.uploads(cloud.serial)] == ["rescue", "rescue", "liberty"]


def test_backoff_is_exponential_with_jitter_and_capped():
    assert uplink.backoff_ms(1, 10, 900, rand=0) == 5000
    assert uplink.backoff_ms(1, 10, 900, rand=0.999) < 10000
    assert uplink.backoff_ms(3, 10, 900, rand=0) == 20000
    assert uplink.backoff_ms(30, 10, 900, rand=0.999) <= 900000
    assert len({uplink.backoff_ms(4) for _ in range(50)}) > 5


def _impostor(tmp_path, kit, own_ca):
    d = str(tmp_path / ("mitm-own-ca" if own_ca else "mitm-our-ca"))
    os.makedirs(d, exist_ok=True)
    ca = pki.ensure_ca(d, "evil-ca", "Evil CA") if own_ca else kit.ca
    addr = "127.77.7.%d" % next(_hosts)
    cert, key = pki.ensure_server(d, "liberty", "liberty.fleetbox.test", [addr], ca)
    return Impostor(addr, cert, key)


@pytest.mark.parametrize("own_ca", [True, False], ids=["certificate-from-another-ca", "right-ca-wrong-pin"])
def test_man_in_the_middle_is_refused_and_data_kept(cloud, tmp_path, own_ca):
    mitm = _impostor(tmp_path, cloud, own_ca)
    try:
        cfg = cloud.raw_cfg(endpoints=("liberty",), resolve={"liberty": (mitm.address, mitm.port)})
        from fleetbox import config
        state = str(tmp_path / "box")
        os.makedirs(state)
        spool, up = Spool(state + "/spool"), uplink.Uplink(config.check(cfg), cloud.identity, state)
        put_cycle(spool, 0)
        before = {i: spool._file(i) for i in spool.ids()}
        content = [open(p, "rb").read() for p in before.values()]
        with pytest.raises(uplink.UplinkError) as e:
            run(up.drain(spool))
        assert ("matches no pin" in str(e.value)) == (not own_ca)
        assert spool.ids() == list(before) and [open(p, "rb").read() for p in before.values()] == content
        assert mitm.received == []              # not one byte of HTTP reached the impostor
        assert cloud.store.uploads(cloud.serial) == []
    finally:
        mitm.stop()


def test_through_an_http_proxy_with_basic_auth(cloud, tmp_path):
    proxy, cfg, target = cloud.through_proxy("127.77.8.%d" % next(_hosts))
    try:
        from fleetbox import config
        state = str(tmp_path / "box")
        os.makedirs(state)
        spool, up = Spool(state + "/spool"), uplink.Uplink(config.check(cfg), cloud.identity, state)
        put_cycle(spool, 0)
        put_cycle(spool, 1)
        assert run(up.drain(spool)) == 2
        assert proxy.tunnels == [target]        # one tunnel, kept alive for both uploads
        assert len(cloud.store.uploads(cloud.serial)) == 2
        cfg["proxy"]["password"] = "not-the-proxy-password"     # a secret now: never a word of other logs
        up2 = uplink.Uplink(config.check(cfg), cloud.identity, state)
        put_cycle(spool, 2)
        with pytest.raises(uplink.UplinkError) as e:
            run(up2.drain(spool))
        assert "407" in str(e.value) and len(spool) == 1
        assert ("auth", target) in proxy.refused
    finally:
        proxy.stop()


def test_replayed_bitflipped_and_garbage_envelopes_get_4xx_over_https(cloud):
    url = "https://liberty.fleetbox.test:%d/v1/ingest" % cloud.cloud.receivers["liberty"].port
    res = cloud.cloud.receivers["liberty"].address
    ca = pki.der(cloud.ca[1])
    pins = [bytes.fromhex(p) for p in cloud.pins()]
    key = bytes.fromhex(cloud.identity["device_key"])
    from fleetbox import cbor

    def env(seq, upload):
        pt = (cbor.dumps({"v": 1, "upload": upload})
              + cbor.dumps({"scan": "full", "cycle": T0, "records": sample_records(0, 1)}))
        return envelope.seal(key, 1, cloud.serial, seq, int(time.time()), pt)

    def post(body):
        status, reply = https.request("POST", url, body, ca, pins, res)
        return status, cloud.answer(reply)

    first, second = env(1, 1), env(2, 2)
    assert post(first)[0] == 200 and post(second)[0] == 200
    assert post(first) == (409, {"ok": False, "reason": "replay", "last_seq": 2, "sealed": True})
    flipped = bytearray(env(3, 3))
    flipped[60] ^= 0x01
    assert post(bytes(flipped)) == (403, {"ok": False, "reason": "unauthenticated"})
    assert post(b"not an envelope at all")[1]["reason"] == "malformed"
    assert post(second)[1].get("duplicate") is True          # a copy of the last one: acknowledged, not stored again
    assert [u["upload"] for u in cloud.store.uploads(cloud.serial)] == [1, 2]
    assert [r["reason"] for r in cloud.store.rejects()] == ["replay", "bad-mac", "malformed"]
    assert post(env(4, 3))[0] == 200                           # and the receiver still serves


def test_never_plain_http():
    with pytest.raises(https.HttpError):
        https.Connection("http://liberty.fleetbox.test/v1/ingest", b"ca")
    with pytest.raises(https.HttpError):
        https.Connection("https://x/v1", None)
    from fleetbox import config
    with pytest.raises(config.ConfigError):
        config.check({"endpoints": [{"url": "http://x/v1/ingest"}]})


def test_connection_reuse_counts_on_the_wire(cloud, tmp_path):
    lib = cloud.cloud.receivers["liberty"]
    relay = Relay("127.77.9.%d" % next(_hosts), (lib.address, lib.port))
    try:
        cfg = cloud.raw_cfg(endpoints=("liberty",), resolve={"liberty": (relay.address, relay.port)})
        from fleetbox import config
        state = str(tmp_path / "box")
        os.makedirs(state)
        spool, up = Spool(state + "/spool"), uplink.Uplink(config.check(cfg), cloud.identity, state)
        for c in range(3):
            put_cycle(spool, c)
        assert run(up.drain(spool)) == 3
        assert relay.count["connections"] == 1 and up.stats["handshakes"] == 1
    finally:
        relay.stop()


def test_uplink_config_is_checked():
    from fleetbox import config
    ok = config.check({"proxy": {"url": "http://127.0.0.1:3128", "user": "u", "password": "p"},
                       "backoff_s": [5, 60], "spool_max_bytes": 65536})
    assert ok["backoff_s"] == [5, 60] and ok["http_timeout_s"] == 10 and ok["keepalive"] is True
    for bad, field in (({"proxy": {"url": "https://p:1"}}, "proxy"), ({"backoff_s": [10, 5]}, "backoff_s"),
                       ({"http_timeout_s": 0}, "http_timeout_s"), ({"spool_max_bytes": -1}, "spool_max_bytes")):
        with pytest.raises(config.ConfigError) as e:
            config.check(bad)
        assert field in str(e.value)


def test_a_box_whose_sequence_state_was_lost_continues_after_the_clouds(cloud, tmp_path):
    spool, up = box(cloud, tmp_path)
    for c in range(3):
        put_cycle(spool, c)
        run(up.drain(spool))
    os.remove(str(tmp_path / "box" / "uplink.seq"))     # e.g. a torn write on an old firmware
    spool2, up2 = box(cloud, tmp_path)
    assert up2.seq == 0
    put_cycle(spool2, 3)
    assert run(up2.drain(spool2)) == 1 and up2.seq > 3
    assert len(cloud.store.uploads(cloud.serial)) == 4
