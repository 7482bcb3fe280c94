"""Payload version 3 (docs/payload.md): the box's compressed uploads against the vector, the
dictionary the box, the cloud and the document share, provenance entry by entry, and the cloud
reading versions 1, 2 and 3 side by side, refusing what breaks the document (zip bombs too)."""
import hashlib
import json
import os
import re
import zlib

import cbor2
import pytest

from cloud import paydict as cloud_paydict
from cloud.payload import MAX_INFLATED, PayloadError, decode_payload
from cloud.store import Store
from fleetbox import cbor, paydict, uplink
from fleetbox.delta import DeltaState

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VECTORS = os.path.join(ROOT, "docs", "vectors")
with open(os.path.join(VECTORS, "payload-v3.json")) as _f:
    V = json.load(_f)


def test_one_dictionary_on_the_box_in_the_cloud_and_in_the_document():
    with open(os.path.join(VECTORS, "payload-dict-1.json")) as f:
        source = json.load(f)
    with open(os.path.join(VECTORS, "payload-dict-1.cbor.hex")) as f:
        published = bytes.fromhex("".join(f.read().split()))
    assert paydict.DICT1 == cloud_paydict.DICT1 == published == cbor.dumps(source)
    assert cbor2.dumps(source, canonical=True) == published     # any deterministic CBOR encoder gives it
    assert hashlib.sha256(published).hexdigest() == V["dictionary_sha256"]
    with open(os.path.join(ROOT, "docs", "payload.md")) as f:
        assert V["dictionary_sha256"] in f.read()


def test_vector_box_bytes_and_cloud_records(tmp_path):
    state = DeltaState(str(tmp_path / "delta"))
    store = Store(str(tmp_path / "cloud.sqlite"))
    for step in V["steps"]:
        out, pending = state.encode(step["upload"], step["batch"])
        assert out == step["sent"]
        plaintext = bytes(uplink.payload(step["upload"], out, V["epoch"]))
        assert plaintext.hex() == step["plaintext"]
        head, batch = decode_payload(plaintext)
        fresh, resync = store.store_upload(V["box"], step["upload"], head["upload"], batch, "liberty", 0)
        assert fresh and resync == []
        state.commit(pending, resync)
        for serial, rec in step["cloud_records"].items():
            assert store.device(V["box"], serial) == rec


def test_a_third_party_decodes_the_vector_with_zlib_and_cbor_alone():
    for step in V["steps"]:
        data = bytes.fromhex(step["plaintext"])
        dec = cbor2.CBORDecoder(__import__("io").BytesIO(data))
        head = dec.decode()
        rest = data[dec.fp.tell():]
        if "z" in head:
            assert head["z"] == 1
            d = zlib.decompressobj(-15, zdict=bytes.fromhex(open(os.path.join(VECTORS, "payload-dict-1.cbor.hex"))
                                                           .read().replace("\n", "")))
            rest = d.decompress(rest)
            assert d.eof
        assert cbor2.loads(rest) == step["sent"]


def test_doc_carries_the_vector():
    with open(os.path.join(ROOT, "docs", "payload.md")) as f:
        flat = re.sub(r"\s+", "", f.read())
    for step in V["steps"]:
        assert step["plaintext"] in flat


def test_provenance_travels_only_when_it_changes(tmp_path):
    sent = [step["sent"] for step in V["steps"]]
    first, counters, full = sent
    assert all("sources" in r for r in first["r"])
    one, two = counters["r"]
    assert "sources" not in one                             # the same provenance: nothing
    assert two["sources"] == {"counters.total": "web:https:/hp/device/InternalPages/Index?id=UsagePage"}
    one, two = full["r"]
    assert one["-"] == ["sources"] and "mac" not in one["sources"]   # an entry went: the map replaces
    assert "sources" not in two


def test_versions_one_two_and_three_side_by_side(tmp_path):
    store = Store(str(tmp_path / "cloud.sqlite"))
    rec = {"ip": "192.0.2.7", "serial": "OLD1", "counters": {"total": 5}, "collected_at": 1767225600,
           "sources": {"serial": "prtGeneralSerialNumber"}}
    v1 = cbor.dumps({"v": 1, "upload": 1}) + cbor.dumps({"scan": "full", "cycle": 1767225600, "records": [rec]})
    v2 = cbor.dumps({"v": 2, "u": 1, "e": 7}) + cbor.dumps({"s": 1, "c": 1767225600, "r": [dict(rec, **{"#": 1})]})
    state = DeltaState(str(tmp_path / "delta"))
    out, _ = state.encode(1, {"scan": "full", "cycle": 1767225600, "records": [rec]})
    v3 = bytes(uplink.payload(1, out, 7))
    for box, plaintext, version in (("B1", v1, 1), ("B2", v2, 2), ("B3", v3, 3)):
        head, batch = decode_payload(plaintext)
        assert head["v"] == version
        store.store_upload(box, 1, head["upload"], batch, "liberty", 0)
        assert store.device(box, "OLD1") == rec


def test_a_version_2_delta_still_replaces_the_provenance_whole(tmp_path):
    store = Store(str(tmp_path / "cloud.sqlite"))
    full = {"#": 1, "serial": "S9", "sources": {"serial": "prtGeneralSerialNumber", "mac": "ifPhysAddress (first)"}}
    for u, batch in ((1, {"s": 1, "c": 100, "r": [full]}),
                     (2, {"s": 2, "c": 400, "b": 1, "r": [{"=": 1, "sources": {"serial": "entPhysicalSerialNum"}}]})):
        header = {"v": 2, "u": u, "e": 1} if u == 1 else {"v": 2, "u": u}
        head, b = decode_payload(cbor.dumps(header) + cbor.dumps(batch))
        store.store_upload("B", u, head["upload"], b, "liberty", 0)
    assert store.device("B", "S9")["sources"] == {"serial": "entPhysicalSerialNum"}


def _v3(head, body):
    return cbor.dumps(dict({"v": 3, "u": 1}, **head)) + body


def _deflate(data, zdict=paydict.DICT1):
    c = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=zdict)
    return c.compress(data) + c.flush()


def test_a_zip_bomb_is_refused_without_inflating_it():
    batch = cbor.dumps({"s": 1, "c": 1, "r": [{"#": 1, "pad": "x" * (MAX_INFLATED + 10)}]})
    bomb = _deflate(batch)
    assert len(bomb) < 4096
    with pytest.raises(PayloadError) as e:
        decode_payload(_v3({"z": 1}, bomb))
    assert "inflates beyond" in str(e.value)


@pytest.mark.parametrize("head, body, words", [
    ({"z": 2}, b"\x03\x00", "unknown codec"),
    ({"z": "deflate"}, b"\x03\x00", "unknown codec"),
    ({"z": 1}, b"\xff\xff\xff", "DEFLATE"),
    ({"z": 1}, _deflate(cbor.dumps({"s": 1, "c": 1}))[:-2], "truncated"),
    ({"z": 1}, _deflate(cbor.dumps({"s": 1, "c": 1})) + b"\x00", "trailing"),
    ({"z": 1}, _deflate(cbor.dumps({"s": 1, "c": 1}) + b"\x00"), "trailing bytes after the batch"),
    ({}, cbor.dumps({"s": 1, "c": 1, "r": [{"=": 1, "#": 1}]}), "exactly one"),
])
def test_bad_version_3_payloads_are_refused_with_a_reason(head, body, words):
    with pytest.raises(PayloadError) as e:
        decode_payload(_v3(head, body))
    assert words in str(e.value)


def test_small_batches_go_uncompressed_and_large_ones_compressed(tmp_path):
    state = DeltaState(str(tmp_path / "delta"))
    seen = bytes(uplink.payload(5, {"s": 5, "c": 1767225600, "k": [1, 0], "b": 4}, 1))
    head = cbor2.CBORDecoder(__import__("io").BytesIO(seen)).decode()
    assert head == {"v": 3, "u": 5}                         # no "z": the batch follows as plain CBOR
    assert decode_payload(seen)[1]["seen"] == [1, 0]
    with open(os.path.join(VECTORS, "payload-v3.json")) as f:
        recs = json.load(f)["steps"][0]["batch"]
    out, _ = state.encode(1, recs)
    big = bytes(uplink.payload(1, out, 1))
    assert len(big) * 2 < len(cbor.dumps(out))
    assert decode_payload(big)[1]["records"] == out["r"]
