"""fleetbox.countertables (docs/profiles.md "Counter tables and blobs"): the documented
vector, sums over ranges, what is never a counter, malformed blobs. Runs on CPython and
MicroPython."""
import binascii
import json

from fleetbox import countertables, profiles
from check import raises


def _dir():
    f = __file__.replace("\\", "/")
    return f.rsplit("/", 1)[0] if "/" in f else "."


def _vector():
    d = _dir() + "/../../docs/vectors/"
    lib = profiles.load([d + "counter-tables.json"])
    with open(d + "counter-tables-cases.json") as f:
        cases = json.load(f)
    return lib.get("ExampleTables"), cases


def _columns(rows):
    return {r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}


def _fill(profile, cases):
    into, sources = {}, {}
    types, values = _columns(cases["table_rows"])
    c = profile["counters"]
    countertables.table(c["tables"][0], types, values, into, sources)
    err = countertables.blob(c["blobs"][0], binascii.unhexlify(cases["blob_hex"]), into, sources)
    return into, sources, err


def test_documented_vector():
    profile, cases = _vector()
    into, sources, err = _fill(profile, cases)
    assert err is None
    assert into == cases["counters"], into
    assert sources == cases["sources"], sources
    # the blob is asked with the profile's GET
    assert "1.3.6.1.4.1.99999.5.10.0" in profiles.oids(profile)


def test_blob_as_hex_text_reads_alike():
    profile, cases = _vector()
    into, sources = {}, {}
    assert countertables.blob(profile["counters"]["blobs"][0], cases["blob_hex"].encode(), into, sources) is None
    assert into["total"] == 48213 and into["mono"] == 41459 and into["vendor"]["cmy"] == 1164


def test_known_counters_are_kept():
    profile, cases = _vector()
    into = {"total": 7, "vendor": {"cyan": 3}}
    sources = {"counters.total": "prtMarkerLifeCount"}
    types, values = _columns(cases["table_rows"])
    countertables.table(profile["counters"]["tables"][0], types, values, into, sources)
    countertables.blob(profile["counters"]["blobs"][0], binascii.unhexlify(cases["blob_hex"]), into, sources)
    assert into["total"] == 7 and sources["counters.total"] == "prtMarkerLifeCount"
    assert into["vendor"]["cyan"] == 3 and "counters.vendor.cyan" not in sources
    assert into["copy"] == 1262 and into["mono"] == 41459


def test_missing_or_bad_rows_are_no_counter():
    spec = {"table": "1.3.6.1.4.1.1.1", "type": 2, "value": 9, "rows": 8,
            "map": {"total": [[10, 10]], "copy": [[200, 203]], "fax": [[300, 300]], "scan": [[870, 871]]}}
    types = {1: 10, 2: 200, 3: 201, 4: 300, 5: b"870"}
    values = {1: -1, 2: 5, 3: b"6", 4: 0}
    into, sources = {}, {}
    countertables.table(spec, types, values, into, sources)
    # total negative, copy has a text value, scan's type is not an integer: none of them
    assert into == {"fax": 0}, into
    assert sources == {"counters.fax": "table 1.3.6.1.4.1.1.1 type 300"}


def test_tlv_decoding_and_errors():
    assert countertables.tlv(b"") == {}
    assert countertables.tlv(b"\x00\x01\x05\xff\x07") == {0: 5}
    assert countertables.tlv(b"\x01\x08" + b"\x00" * 7 + b"\x02") == {1: 2}
    assert raises(ValueError, countertables.tlv, b"\x00\x04\x00\x00")      # value cut short
    assert raises(ValueError, countertables.tlv, b"\x00")                 # length missing
    assert raises(ValueError, countertables.tlv, b"\x00\x00")             # zero length
    assert raises(ValueError, countertables.tlv, b"\x00\x09" + b"\x00" * 9)
    assert raises(ValueError, countertables.tlv, 5)
    assert raises(ValueError, countertables.tlv, b"\x00\x01\x01" * 400)   # over the bound
    spec = {"oid": "1.3.6.1.4.1.1.2.0", "format": "tlv8", "map": {"total": [0], "mono": [1, 2]}}
    into, sources = {}, {}
    err = countertables.blob(spec, b"\x00\x02\x01", into, sources)
    assert err and "1.3.6.1.4.1.1.2.0" in err and into == {} and sources == {}
    assert countertables.blob(spec, None, into, sources) is None and into == {}
    countertables.blob(spec, b"\x00\x01\x09\x01\x01\x02", into, sources)
    assert into == {"total": 9}     # mono needs ids 1 and 2, 2 is absent
