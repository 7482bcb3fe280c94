"""fleetbox.delta: provenance (`sources`) travels entry by entry, only when an entry changed.

Runs under pytest on CPython and under tests/mprun.py on MicroPython.
"""
import os

from check import fresh_dir, tmp
from fleetbox.delta import DeltaState

SRC = {"serial": "prtGeneralSerialNumber", "counters.total": "prtMarkerLifeCount", "mac": "ifPhysAddress (first)"}


def _rec(total, sources, scan="full"):
    return {"serial": "S1", "ip": "192.0.2.9", "counters": {"total": total}, "sources": sources, "scan": scan,
            "collected_at": 1000 + total, "uptime_s": None}


def _send(state, upload, kind, rec):
    out, pending = state.encode(upload, {"scan": kind, "cycle": 1000 + rec["counters"]["total"], "records": [rec]})
    state.commit(pending)
    return out.get("r", [{}])[0]


def test_sources_entries_travel_only_when_they_change():
    d = fresh_dir(tmp("fbdelta-sources"))
    state = DeltaState(d + "/delta")
    first = _send(state, 1, "full", _rec(1, dict(SRC)))
    assert first["sources"] == SRC and first["#"] == 1
    # a counters scan names one source, the same as held: no provenance travels
    same = _send(state, 2, "counters", _rec(2, {"counters.total": "prtMarkerLifeCount"}, "counters"))
    assert "sources" not in same and same["counters"] == {"total": 2}
    # one entry changed: only that one
    moved = _send(state, 3, "counters", _rec(3, {"counters.total": "web:http:/x"}, "counters"))
    assert moved["sources"] == {"counters.total": "web:http:/x"} and "-" not in moved
    # after a reboot (state from flash) a full scan with the changed entry kept: nothing
    state = DeltaState(d + "/delta")
    full = _send(state, 4, "full", _rec(4, dict(SRC, **{"counters.total": "web:http:/x"})))
    assert "sources" not in full
    # a full scan that lost an entry: the whole map replaces the held one
    lost = {"serial": "prtGeneralSerialNumber", "counters.total": "web:http:/x"}
    gone = _send(state, 5, "full", _rec(5, dict(lost)))
    assert gone["sources"] == lost and gone["-"] == ["sources"]


def test_a_state_from_before_entry_digests_replaces_the_map_once():
    d = fresh_dir(tmp("fbdelta-sources-old"))
    state = DeltaState(d + "/delta")
    _send(state, 1, "full", _rec(1, dict(SRC)))
    key = list(state.devices)[0]
    state.devices[key]["h"]["sources"] = "0123abcd"        # one digest of the whole map (older firmware)
    out = _send(state, 2, "full", _rec(2, dict(SRC)))
    assert out["sources"] == SRC and out["-"] == ["sources"]
    assert "sources" not in _send(state, 3, "full", _rec(3, dict(SRC)))
    assert os.stat(d + "/delta")[6] > 0
