"""An unknown key id and a known one with a wrong MAC take the same path through the opener
(cloud/envelope.py): one key derivation and one MAC each, so answer timing tells no ids apart."""
import pytest

from cloud import envelope

KEY = bytes(range(32))


def _counting(monkeypatch):
    calls = []
    real_derive, real_mac = envelope.derive_keys, envelope._mac

    def derive(key, kid, direction=envelope.UP):
        calls.append(("derive", bytes(key)))
        return real_derive(key, kid, direction)

    def mac(mac_key, data):
        calls.append(("mac", len(data)))
        return real_mac(mac_key, data)
    monkeypatch.setattr(envelope, "derive_keys", derive)
    monkeypatch.setattr(envelope, "_mac", mac)
    return calls


def _open(data):
    opener = envelope.Opener(lambda device, kid: KEY if (device, kid) == ("FBX-KNOWN", 1) else None)
    with pytest.raises(envelope.CloudEnvelopeError) as e:
        opener.open(data, now=1000)
    return e.value.reason


def test_unknown_key_and_bad_mac_cost_the_same_work(monkeypatch):
    forged = envelope.seal(bytes(32), 1, "FBX-KNOWN", 5, 1000, b"x" * 40, direction=envelope.UP)
    unknown = envelope.seal(bytes(32), 1, "FBX-OTHER", 5, 1000, b"x" * 40, direction=envelope.UP)
    calls = _counting(monkeypatch)
    assert _open(forged) == "bad-mac"
    known_path = [c[0] for c in calls]
    macs = [c for c in calls if c[0] == "mac"]
    del calls[:]
    assert _open(unknown) == "unknown-key"
    assert [c[0] for c in calls] == known_path == ["derive", "mac"]
    assert [c for c in calls if c[0] == "mac"] == macs       # over the same bytes
    dummy = calls[0][1]
    assert dummy == envelope._DUMMY_KEY and dummy not in (KEY, bytes(32))
    del calls[:]
    assert _open(unknown) == "unknown-key" and calls[0][1] == dummy     # one dummy key per process


def test_an_envelope_that_happens_to_verify_under_the_dummy_key_is_still_unknown(monkeypatch):
    sealed = envelope.seal(envelope._DUMMY_KEY, 1, "FBX-OTHER", 5, 1000, b"x" * 40, direction=envelope.UP)
    assert _open(sealed) == "unknown-key"
    good = envelope.seal(KEY, 1, "FBX-KNOWN", 5, 1000, b"x" * 40, direction=envelope.UP)
    hdr, plain = envelope.Opener(lambda d, k: KEY).open(good, now=1000)
    assert plain == b"x" * 40 and hdr["device_id"] == "FBX-KNOWN"
