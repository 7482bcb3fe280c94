"""The uplink's handling of the cloud's answers (docs/downlink.md), without a network: a scripted
connection stands for the endpoint. Forged, replayed, held-back, plain and absurd answers never
acknowledge a batch, move the counter or set the clock; sealed corrections do.

Runs under pytest on CPython and under tests/mprun.py on MicroPython."""
import asyncio
import json
import os

from check import LogCapture, rmtree, tmp
from fleetbox import cbor, config, envelope, port, uplink
from fleetbox.spool import Spool

KEY = bytes(range(32))
IDENTITY = {"serial": "FBX-ANS1", "kid": 1, "device_key": "".join("%02x" % b for b in KEY)}
NOW = 1767225600
BATCH = {"scan": "full", "cycle": NOW, "records": []}


class Cloud:
    """Answers each request with script(seq of the request's envelope, its ts) -> (status, body)."""

    def __init__(self, script):
        self.script = script
        self.open = True
        self.seen = []      # (seq, ts) of every request
        self.down = 0

    async def arequest(self, method, body, headers=None, path=None):
        hdr = envelope.parse_header(body)
        self.seen.append((hdr["seq"], hdr["ts"]))
        return self.script(self, hdr["seq"], hdr["ts"])

    def sealed(self, fields, key=KEY, down=None, ctype=2):
        if down is None:
            self.down += 1
            down = self.down
        return envelope.seal(key, 1, IDENTITY["serial"], down, NOW, cbor.dumps(fields), ctype,
                             direction=envelope.DOWN)

    def close(self):
        pass


def box(name, script):
    d = tmp("fbans-") + name
    rmtree(d)
    os.mkdir(d)
    cfg = config.check({"endpoints": [{"url": "https://liberty.test/v1/ingest", "name": "liberty"}],
                        "ca": "MAIFAA==", "pins": ["00" * 32]})
    up = uplink.Uplink(cfg, IDENTITY, d)
    cloud = Cloud(script)
    up.conns[0] = cloud
    spool = Spool(d + "/spool")
    spool.put(json.dumps(BATCH))
    return up, spool, cloud, d


def drain(up, spool):
    try:
        return asyncio.run(up.drain(spool)), None
    except uplink.UplinkError as e:
        return 0, str(e)


def ok(c, seq, ts):
    return 200, c.sealed({"ok": True, "upload": 1, "re": seq, "time": NOW})


def test_a_sealed_acknowledgement_delivers():
    up, spool, cloud, _ = box("ok", ok)
    assert drain(up, spool) == (1, None) and len(spool) == 0
    assert up.stats["cloud_time"] == NOW and up.down.last == 1


def test_forged_plain_and_wrong_answers_never_acknowledge():
    scripts = {
        "plain": lambda c, s, t: (200, b'{"ok": true, "time": 946684800}'),
        "empty": lambda c, s, t: (204, b""),
        "forged": lambda c, s, t: (200, c.sealed({"ok": True, "upload": 1, "re": s}, key=bytes(32))),
        "other-ctype": lambda c, s, t: (200, c.sealed({"ok": True, "upload": 1, "re": s}, ctype=240)),
        "other-upload": lambda c, s, t: (200, c.sealed({"ok": True, "upload": 2, "re": s})),
        "unbound": lambda c, s, t: (200, c.sealed({"ok": True, "upload": 1})),
        "held-back": lambda c, s, t: (200, c.sealed({"ok": True, "upload": 1, "re": s - 1})),
        "resync-abc": lambda c, s, t: (200, c.sealed({"ok": True, "upload": 1, "re": s, "resync": "abc"})),
        "replayed": lambda c, s, t: (200, c.sealed({"ok": True, "upload": 1, "re": s}, down=1)),
    }
    for name, script in scripts.items():
        up, spool, cloud, _ = box(name, script)
        up.down.remember(1)          # "replayed": down seq 1 was accepted before
        with LogCapture(port.WARN) as log:
            sent, err = drain(up, spool)
        assert sent == 0 and err and len(spool) == 1, (name, err)
        assert up.stats["bad_answers"] >= 1 and log.lines, name
        assert "cloud_time" not in up.stats, name          # no clock from what was refused
        assert len(cloud.seen) == 2, (name, cloud.seen)     # two attempts, then the backoff


def test_a_huge_last_seq_is_never_adopted_nor_written():
    for last, name in ((2 ** 64 - 1, "max"), (2 ** 62, "far")):
        def script(c, s, t, last=last):
            return 409, c.sealed({"ok": False, "reason": "replay", "last_seq": last, "re": s})
        up, spool, cloud, d = box("seq-" + name, script)
        sent, err = drain(up, spool)
        assert sent == 0 and len(spool) == 1
        assert up.seq < 10, up.seq
        with open(d + "/uplink.seq") as f:
            assert int(f.read()) < 10
    up, spool, cloud, d = box("plain-seq", lambda c, s, t: (409, b'{"ok":false,"reason":"replay",'
                                                                b'"last_seq":18446744073709551615}'))
    drain(up, spool)
    assert up.seq < 10


def test_a_sealed_last_seq_ahead_is_adopted_and_the_batch_resealed():
    def script(c, s, t):
        if s <= 1000:
            return 409, c.sealed({"ok": False, "reason": "replay", "last_seq": 1000, "re": s})
        return ok(c, s, t)
    up, spool, cloud, d = box("ahead", script)
    assert drain(up, spool) == (1, None)
    assert [s for s, _ in cloud.seen] == [1, 1001]
    with open(d + "/uplink.seq") as f:
        assert int(f.read()) == 1001


def test_a_corrupt_counter_on_flash_counts_as_lost():
    d = tmp("fbans-counter")
    rmtree(d)
    os.mkdir(d)
    with open(d + "/uplink.seq", "w") as f:
        f.write(str(2 ** 64 - 1))
    cfg = config.check({"endpoints": [{"url": "https://liberty.test/v1/ingest"}], "ca": "MAIFAA==",
                        "pins": ["00" * 32]})
    assert uplink.Uplink(cfg, IDENTITY, d).seq == 0


def test_out_of_window_sets_the_clock_and_the_batch_is_sealed_again():
    clock = [NOW - 365 * 86400]
    port.set_clock(lambda: clock[0])
    try:
        def script(c, s, t):
            if abs(t - NOW) > 86400:
                return 409, c.sealed({"ok": False, "reason": "out-of-window", "time": NOW, "re": s})
            return ok(c, s, t)

        def set_time(t):
            clock[0] = t
        up, spool, cloud, _ = box("clock", script)
        up.on_time = set_time
        assert drain(up, spool) == (1, None)
        assert [t for _, t in cloud.seen] == [NOW - 365 * 86400, NOW]
        assert clock[0] == NOW
        # a plain answer's time is never taken
        clock[0] = 0
        up, spool, cloud, _ = box("clock-plain", lambda c, s, t: (409, b'{"ok":false,"reason":"out-of-window",'
                                                                      b'"time":1767225600}'))
        up.on_time = set_time
        drain(up, spool)
        assert clock[0] == 0 and len(spool) == 1
    finally:
        port.set_clock(None)
