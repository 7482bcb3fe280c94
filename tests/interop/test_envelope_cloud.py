"""Cloud side of the envelope (cloud/envelope.py) against the vectors and the firmware."""
import json
import logging
import os
import re

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fleetbox import cbor, envelope as fw
from cloud import envelope as ce

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
with open(os.path.join(ROOT, "docs", "vectors", "envelope-v1.json")) as _f:
    V = json.load(_f)
KEYS = {(k["device_id"], k["kid"]): bytes.fromhex(k["key"]) for k in V["keys"]}
T0 = 1767225600
K = bytes(range(32))
DEV = "FBX-000001"


def opener(keys=None, store=None, **kw):
    keys = KEYS if keys is None else keys
    return ce.Opener(lambda d, kid: keys.get((d, kid)), store, **kw)


def reason_of(op, data, now=T0):
    with pytest.raises(ce.CloudEnvelopeError) as ei:
        op.open(data, now=now)
    return ei.value


# --- vectors ----------------------------------------------------------------------------

@pytest.mark.parametrize("v", V["valid"], ids=[v["name"] for v in V["valid"]])
def test_vector_valid(v):
    key = bytes.fromhex(v["key"])
    enc, mac = ce.derive_keys(key, v["kid"], v["direction"])
    assert (enc.hex(), mac.hex()) == (v["enc_key"], v["mac_key"])
    env = ce.seal(key, v["kid"], v["device_id"], v["seq"], v["ts"], bytes.fromhex(v["plaintext"]),
                  v["content_type"], bytes.fromhex(v["iv"]), v["direction"])
    assert env.hex() == v["envelope"]
    hdr, pt = opener(direction=v["direction"]).open(env, now=v["ts"] or T0)
    assert pt.hex() == v["plaintext"]
    assert {k: hdr[k] for k in ("kid", "seq", "ts", "content_type", "device_id")} == \
        {k: v[k] for k in ("kid", "seq", "ts", "content_type", "device_id")}
    assert hdr == fw.parse_header(env)
    if v["plaintext"] and v["plaintext_diag"] != "(empty)":
        obj = cbor2.loads(pt)
        assert cbor.dumps(obj) == pt  # the plaintext is deterministic CBOR


@pytest.mark.parametrize("v", V["invalid"], ids=[v["name"] for v in V["invalid"]])
def test_vector_invalid(v):
    store = ce.MemoryReplayStore()
    if v["last_seq"] is not None:
        store.commit(DEV, v["last_seq"])
    e = reason_of(opener(store=store, window=V["window"]), bytes.fromhex(v["envelope"]), v["now"])
    assert e.reason == v["reason"]
    assert e.duplicate == v["duplicate"]


def test_doc_carries_the_vectors():
    """docs/envelope.md shows the same vectors as the JSON file (so the doc cannot drift)."""
    with open(os.path.join(ROOT, "docs", "envelope.md")) as f:
        doc = f.read()
    flat = re.sub(r"\s+", "", doc)
    for v in V["valid"]:
        for field in ("key", "iv", "plaintext", "enc_key", "mac_key", "envelope"):
            assert v[field] in flat, (v["name"], field)
        assert "`%s`" % v["name"] in doc
        assert v["plaintext_diag"] in doc
    for v in V["invalid"]:
        assert "| %s |" % v["name"] in doc
    assert ce.SALT.hex() in doc
    for label in (b"up-enc", b"up-mac", b"down-enc", b"down-mac"):
        assert label.hex() in doc


# --- firmware <-> cloud -------------------------------------------------------------------

device_ids = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=32)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.binary(min_size=32, max_size=32), kid=st.integers(0, 2 ** 32 - 1), did=device_ids,
       seq=st.integers(0, 2 ** 64 - 1), ts=st.integers(0, 2 ** 32 - 1), pt=st.binary(max_size=600),
       ctype=st.integers(1, 255))
def test_firmware_seal_cloud_open(key, kid, did, seq, ts, pt, ctype):
    env = fw.seal(key, kid, did, seq, ts, pt, ctype)
    assert len(env) == len(pt) + len(did) + 70 + (16 - len(pt) % 16)
    op = ce.Opener(lambda d, k: key if (d, k) == (did, kid) else None)
    hdr, out = op.open(env, now=ts)
    assert out == pt
    assert (hdr["kid"], hdr["device_id"], hdr["seq"], hdr["ts"], hdr["content_type"]) == (kid, did, seq, ts, ctype)
    # cloud -> box
    down = ce.seal(key, kid, did, seq, ts, pt, ctype)
    hdr2, out2 = fw.open_(key, down)
    assert out2 == pt and hdr2 == hdr


@settings(max_examples=100, deadline=None)
@given(records=st.lists(st.dictionaries(st.text(max_size=10),
                                        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                                        | st.text(max_size=20) | st.binary(max_size=20), max_size=8), max_size=5))
def test_cbor_batch_through_envelope(records):
    env = fw.seal(K, 1, DEV, 1, T0, cbor.dumps(records))
    _, pt = opener({(DEV, 1): K}).open(env, now=T0)
    assert cbor2.loads(pt) == records


def test_tamper_any_single_byte():
    env = fw.seal(K, 1, DEV, 7, T0, cbor.dumps([{"pages": 1, "serial": "CN1"}] * 3))
    op = ce.Opener(lambda d, kid: K)  # a key for everything: tampering must still fail the MAC
    for i in range(len(env)):
        for mask in (0x01, 0x80, 0xFF):
            b = bytearray(env)
            b[i] ^= mask
            e = reason_of(op, bytes(b))
            allowed = {"bad-mac", "malformed"} | ({"unsupported-version"} if i == 3 else set())
            assert e.reason in allowed, (i, mask, e.reason)


def test_truncated_and_garbage_never_crash():
    env = fw.seal(K, 1, DEV, 7, T0, b"x" * 40)
    op = opener({(DEV, 1): K})
    for n in range(len(env)):
        e = reason_of(op, env[:n])
        # cutting whole blocks can still look well-formed; then the MAC fails
        assert e.reason == ("bad-mac" if n >= 32 + 16 + 32 + 16 and (len(env) - n) % 16 == 0 else "malformed"), n
    e = reason_of(op, env + b"\x00")
    assert e.reason == "malformed"
    for junk in (None, "FBE1", 12, object()):
        assert reason_of(op, junk).reason == "malformed"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_random_input_only_envelope_errors(junk, with_header):
    if with_header:
        junk = bytes.fromhex(V["valid"][1]["envelope"])[:32] + junk
    with pytest.raises(ce.CloudEnvelopeError) as ei:
        opener().open(junk, now=T0)
    assert ei.value.reason in ce.REASONS


# --- replay ---------------------------------------------------------------------------------

def test_replay_and_commit():
    op = opener({(DEV, 1): K})
    e5 = fw.seal(K, 1, DEV, 5, T0, b"five")
    hdr, pt = op.open(e5, now=T0)
    # not committed yet (e.g. the server crashed before storing): the retry is accepted
    hdr, pt = op.open(e5, now=T0)
    op.commit(hdr)
    e = reason_of(op, e5)
    assert e.reason == "replay" and e.duplicate is True and e.header["seq"] == 5
    e4 = fw.seal(K, 1, DEV, 4, T0, b"four")
    e = reason_of(op, e4)
    assert e.reason == "replay" and e.duplicate is False
    e6 = fw.seal(K, 1, DEV, 6, T0, b"six")
    assert op.open(e6, now=T0)[1] == b"six"
    # a tampered copy of a stored envelope is bad-mac, not a duplicate
    b = bytearray(e5)
    b[-1] ^= 1
    assert reason_of(op, bytes(b)).reason == "bad-mac"


def test_replay_is_per_device():
    keys = {(DEV, 1): K, ("FBX-000002", 1): K}
    op = opener(keys)
    h, _ = op.open(fw.seal(K, 1, DEV, 10, T0, b""), now=T0)
    op.commit(h)
    h, _ = op.open(fw.seal(K, 1, "FBX-000002", 3, T0, b""), now=T0)
    op.commit(h)
    assert op.replay.last_seq(DEV) == 10 and op.replay.last_seq("FBX-000002") == 3


def test_memory_store_never_goes_back():
    s = ce.MemoryReplayStore()
    assert s.last_seq("a") is None
    s.commit("a", 5)
    s.commit("a", 3)
    assert s.last_seq("a") == 5


def test_custom_replay_store():
    class Store:
        def __init__(self):
            self.calls = []

        def last_seq(self, device_id):
            self.calls.append(("last", device_id))
            return 100

        def commit(self, device_id, seq):
            self.calls.append(("commit", device_id, seq))

    s = Store()
    op = opener({(DEV, 1): K}, s)
    assert reason_of(op, fw.seal(K, 1, DEV, 100, T0, b"")).duplicate
    h, _ = op.open(fw.seal(K, 1, DEV, 101, T0, b""), now=T0)
    op.commit(h)
    assert ("commit", DEV, 101) in s.calls


# --- keys and time ----------------------------------------------------------------------------

def test_unknown_kid_and_device():
    op = opener({(DEV, 1): K})
    e = reason_of(op, fw.seal(K, 2, DEV, 1, T0, b""))
    assert e.reason == "unknown-key" and e.header["kid"] == 2
    assert reason_of(op, fw.seal(K, 1, "FBX-999", 1, T0, b"")).reason == "unknown-key"


def test_wrong_key_is_bad_mac():
    op = opener({(DEV, 1): bytes(32)})
    assert reason_of(op, fw.seal(K, 1, DEV, 1, T0, b"")).reason == "bad-mac"


def test_key_rotation_two_kids_one_device():
    k2 = os.urandom(32)
    op = opener({(DEV, 1): K, (DEV, 2): k2})
    h, pt = op.open(fw.seal(K, 1, DEV, 1, T0, b"old"), now=T0)
    op.commit(h)
    h, pt = op.open(fw.seal(k2, 2, DEV, 2, T0, b"new"), now=T0)
    assert pt == b"new" and h["kid"] == 2
    op.commit(h)
    # one seq counter per device across kids: an old-kid envelope with an old seq is a replay
    assert reason_of(op, fw.seal(K, 1, DEV, 2, T0, b"x")).reason == "replay"
    h, pt = op.open(fw.seal(K, 1, DEV, 3, T0, b"late"), now=T0)
    assert pt == b"late"
    # kid 1 retired
    op2 = opener({(DEV, 2): k2})
    assert reason_of(op2, fw.seal(K, 1, DEV, 9, T0, b"")).reason == "unknown-key"


def test_time_window(caplog):
    op = opener({(DEV, 1): K})
    env = fw.seal(K, 1, DEV, 1, T0, b"")
    for now in (T0 - 86400, T0, T0 + 86400):
        op.open(env, now=now)
    for now in (T0 - 86401, T0 + 86401, T0 + 10 ** 7):
        e = reason_of(op, env, now)
        assert e.reason == "out-of-window"
    narrow = opener({(DEV, 1): K}, window=60)
    assert reason_of(narrow, env, T0 + 61).reason == "out-of-window"
    # ts 0: the box has no clock yet: accepted, logged
    env0 = fw.seal(K, 1, DEV, 2, 0, b"noclock")
    with caplog.at_level(logging.INFO, logger="fleetbox.cloud.envelope"):
        assert narrow.open(env0, now=T0)[1] == b"noclock"
    assert "no clock" in caplog.text
    # default now is the wall clock
    import time
    assert opener({(DEV, 1): K}).open(fw.seal(K, 1, DEV, 1, int(time.time()), b"now"))[1] == b"now"


def test_direction_is_enforced():
    op = opener({(DEV, 1): K})
    down = ce.seal(K, 1, DEV, 50, T0, b"to the box")  # cloud -> box
    assert reason_of(op, down).reason == "bad-mac"
    assert fw.open_(K, down)[1] == b"to the box"
    up = fw.seal(K, 1, DEV, 50, T0, b"to the cloud")
    e = pytest.raises(fw.EnvelopeError, fw.open_, K, up)
    assert e.value.reason == "bad-mac"


def test_bad_padding_after_valid_mac():
    v = next(v for v in V["invalid"] if v["reason"] == "bad-padding")
    e = reason_of(opener(), bytes.fromhex(v["envelope"]))
    assert e.reason == "bad-padding" and e.header["seq"] == 4


def test_error_reasons_are_closed_set():
    with pytest.raises(ValueError):
        ce.CloudEnvelopeError("whatever")
    e = ce.CloudEnvelopeError("malformed", "x")
    assert str(e) == "malformed: x" and e.duplicate is False and e.header is None


# --- memory budget on the real MicroPython ---------------------------------------------------

MP_SEAL_TO = r"""
import sys, gc, hashlib, binascii
pt = bytearray(24576)       # first: one block at the heap's start, whatever the modules' size
for i in range(0, len(pt), 97):
    pt[i] = i & 0xFF
sys.path.insert(0, sys.argv[1])     # the modules as .mpy, as a board holds them
from fleetbox import envelope
h = hashlib.sha256()
gc.collect()
if sys.argv[2] == "measure":
    print(gc.mem_alloc())   # the plaintext, the modules and the hash: before sealing
else:
    n = envelope.seal_to(h.update, bytes(range(32)), 1, "FBX-000001", 1, 0, pt, iv=bytes(16))
    print(n, binascii.hexlify(h.digest()).decode())
"""


def test_seal_to_streams_24k_in_a_small_micropython_heap(tmp_path):
    """seal_to() needs the plaintext plus one chunk, not two more envelope-sized buffers.

    The heap is what the plaintext, the modules and the hash hold before sealing (measured in a
    first run, so it follows the modules' size and the checkout's path) plus 12 KB: the chunk,
    the header and the cipher's state fit; two more envelope-sized buffers (+48K) do not."""
    import hashlib
    import subprocess
    import sys
    from tests.update_kit import bytecode
    script = tmp_path / "seal_to.py"
    script.write_text(MP_SEAL_TO)
    bytecode(str(tmp_path / "mpy"), None)
    mp = os.path.join(os.path.dirname(sys.executable), "micropython")
    mpy = str(tmp_path / "mpy")
    r = subprocess.run([mp, "-X", "heapsize=1M", str(script), mpy, "measure"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    heap = int(r.stdout.split()[-1]) + 12 * 1024
    r = subprocess.run([mp, "-X", "heapsize=%d" % heap, str(script), mpy, "seal"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    pt = bytearray(24576)
    for i in range(0, len(pt), 97):
        pt[i] = i & 0xFF
    env = ce.seal(bytes(range(32)), 1, DEV, 1, 0, bytes(pt), iv=bytes(16), direction="up")
    assert r.stdout.split() == [str(len(env)), hashlib.sha256(env).hexdigest()]
