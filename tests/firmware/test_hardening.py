"""Inputs and faults that once escaped the box's loop (issue 14): each must be refused or
survived with a log, on CPython and on MicroPython (tests/test_firmware_on_micropython.py)."""
import asyncio

from fleetbox import config, uplink

PIN = "ab" * 32
IDENTITY = {"serial": "HARD-1", "kid": 1, "device_key": "11" * 32}


def _cfg(**extra):
    raw = {"endpoints": [{"url": "https://127.0.0.1:9/v1/ingest"}], "ca": "MAIFAA==", "pins": [PIN]}
    raw.update(extra)
    return config.check(raw)


def _raises(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


def test_a_full_flash_while_writing_the_sequence_number_is_an_uplink_error():
    up = uplink.Uplink(_cfg(), IDENTITY, "/nonexistent-fleetbox-state")

    def full(path, data, tmp=None):
        raise OSError(28)   # ENOSPC

    saved = uplink.atomic_write
    uplink.atomic_write = full
    try:
        e = _raises(uplink.UplinkError, asyncio.run, up.send(1, {"scan": "full", "cycle": 1, "records": []}, 7))
    finally:
        uplink.atomic_write = saved
    assert "sequence number" in str(e)
    assert up.stats["sent"] == 0 and up.stats["bytes_out"] == 0   # nothing left without a persisted number


def test_an_endpoint_without_a_pin_or_with_a_pin_of_the_wrong_length_is_refused():
    from fleetbox import https
    for raw, word in (({"pins": []}, "pin"), ({"pins": ["ab" * 31]}, "32 bytes"), ({"pins": ["ab" * 33]}, "32 bytes"),
                      ({"pins": [PIN, "abcd"]}, "32 bytes"), ({"ca": None}, "ca")):
        e = _raises(config.ConfigError, _cfg, **raw)
        assert word in str(e), (raw, str(e))
    assert _cfg()["pins"] == [bytes([0xAB]) * 32]
    assert config.check({"targets": ["127.0.0.1"]})["pins"] == []   # no endpoint, nothing to pin
    url = "https://127.0.0.1:9/v1/ingest"
    for pins in ((), [], [b"\xab" * 31], [b"\xab" * 32, b"\xab" * 33]):
        _raises(https.PinError, https.Connection, url, b"ca", pins)
    assert https.Connection(url, b"ca", [b"\xab" * 32]).pins == [b"\xab" * 32]
