"""Device memory read entry by entry (fleetbox.devstate), on both runtimes: the entries json.load
gives, whatever the file's layout; a damaged file or entry as docs/collection.md "Device memory"
says; the bound and its eviction order."""
import binascii
import json
import os

from fleetbox import devstate
from fleetbox.port import MICROPYTHON, urandom
from check import LogCapture, tmp
from devmem_files import realistic, spread

TRICKY = {
    "@10.0.0.1": {"seen": 1, "sr": "S1", "mc": None, "rows": {"supplies": 4, "t1.3.6.1.4.1.1347.42": 0}},
    'key "quoted" \\ back': {"s": 'quote" brace} bracket] comma, colon: brace{ bracket[', "e": "\\"},
    "uni\u00e9\u2603": {"u": "snow \u2603 \u00e9", "ctl": "line\nbreak\ttab\u0001"},
    "brace}{,:[]": {"n": [1, [2, {"x": None, "y": []}], True, False], "f": -12.5e1, "z": 0, "neg": -7},
    "empty": {},
    "S9": {"c": {"total": 5}, "t": 1764460800, "f": 1700000000},
    "S-no-time": {"c": {"total": 6}, "t": "later"},
}


def _path(name):
    return tmp("fleetbox-devload-%s-%s.json") % (name, binascii.hexlify(urandom(4)).decode())


def _load(content, max_devices=devstate.DEVICES_MAX):
    """DeviceState of a file holding `content` (str or bytes)."""
    path = _path("load")
    with open(path, "wb") as f:
        f.write(content.encode() if isinstance(content, str) else content)
    try:
        return devstate.DeviceState(path, max_devices)
    finally:
        os.remove(path)


def _entries(st):
    return {k: st.get(k) for k in st.devices}


def _documented(content):
    """What docs/collection.md makes of a file: nothing when it is not one JSON object, else its
    entries that are objects."""
    try:
        data = json.loads(content)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _saved(entries, max_devices=devstate.DEVICES_MAX):
    """The text DeviceState.save writes for `entries`."""
    path = _path("saved")
    st = devstate.DeviceState(path, max_devices)
    for k, v in entries.items():
        st.update(k, **v)
    st.save()
    with open(path) as f:
        text = f.read()
    os.remove(path)
    return text


def test_entries_are_json_loads_whatever_the_layout():
    data = realistic(20)
    data.update(TRICKY)
    layouts = {
        "one line, json.dump's blanks (older firmware)": json.dumps(data),
        "one line, compact": json.dumps(data, separators=(",", ":")),
        "one entry a line (save)": _saved(data),
        "blanks, tabs and CRLF between every token": "\r\n \t" + spread(data) + " \n",
    }
    for name, text in layouts.items():
        got = _entries(_load(text))
        assert got == data, name
    assert layouts["one entry a line (save)"].count("\n") == len(data) - 1


def test_every_cut_short_file_starts_empty():
    text = _saved({"@10.0.0.1": {"seen": 1, "rows": {"supplies": 4}, "sr": "a\"}b"},
                   "S1": {"c": {"total": 9}, "t": 5}, "@10.0.0.2": {"wg": ["x", "y"], "np": "?"}})
    whole = _documented(text)
    assert len(whole) == 3
    for cut in range(len(text)):
        assert _entries(_load(text[:cut], max_devices=8)) == {}, cut
    assert _entries(_load(text, max_devices=8)) == whole


def test_a_damaged_byte_anywhere_does_as_documented():
    text = '{"@10.0.0.1": {"seen": 1, "rows": {"supplies": 4}, "sr": "a\\"}b"},\n"S1": [1, {"t": 5}],\n' \
           '"S2": {"c": {"total": 9}, "t": 5, "x": [true, null, -1.5]}}'
    assert sorted(_documented(text)) == ["@10.0.0.1", "S2"]
    for i in range(len(text)):
        for c in '}"],:x\\{ ':
            damaged = text[:i] + c + text[i + 1:]
            got = _entries(_load(damaged, max_devices=8))
            if MICROPYTHON:
                # its json takes malformed text (a missing comma or value, a wrong bracket) and makes
                # something of it, whole or entry by entry alike: no reference, but no crash either
                assert all(isinstance(v, dict) for v in got.values())
            else:
                assert got == _documented(damaged), damaged


def test_a_file_that_is_not_an_object_starts_empty():
    for text in ("", "   \n", "[1, 2]", "5", '"x"', "null", "{not json", "{} x", '{"a": {}}{', "{,}",
                 '{"a": {},}', '{"a" {}}', '{"a": {} "b": {}}', "{'a': {}}", "\x00\xff"):
        st = _load(text)
        assert st.devices == {} and st.get("a") == {} and not st.was_seen("10.0.0.7"), text
        st.saw("10.0.0.7", "S1", None, "on")            # and it works on
        assert st.was_seen("10.0.0.7")


def test_an_entry_that_is_not_an_object_is_dropped():
    text = '{"@a": [1, 2], "@b": {"seen": 1}, "@c": "x", "@d": 5, "@e": null, "@f": true, "@g": {}}'
    assert _entries(_load(text)) == {"@b": {"seen": 1}, "@g": {}}


def test_an_oversized_entry_is_dropped_with_a_warning_and_the_others_kept():
    big_value = {"wg": ["counters.f%04d\"}]" % i for i in range(devstate.ENTRY_MAX // 10)], "n": [[{}]]}
    data = {"@a": {"seen": 1}, "@big": big_value, "K" * devstate.ENTRY_MAX: {"seen": 1}, "@b": {"pc": 2}}
    for text in (json.dumps(data), spread(data)):
        assert len(text) > 2 * devstate.ENTRY_MAX
        with LogCapture() as log:
            got = _entries(_load(text))
        assert got == {"@a": {"seen": 1}, "@b": {"pc": 2}}
        assert [line[:2] for line in log.lines] == ["W ", "W "] and "over 2048 bytes" in log.lines[0]
    # just under the bound: kept
    fits = {"@fits": {"wg": ["x" * (devstate.ENTRY_MAX - 40)]}}
    assert len(json.dumps(fits, separators=(",", ":"))) < devstate.ENTRY_MAX
    assert _entries(_load(json.dumps(fits))) == fits


def test_a_full_memory_saves_and_loads_back():
    data = realistic(64)
    path = _path("full")
    st = devstate.DeviceState(path, max_devices=128)
    for k, v in data.items():
        st.update(k, **v)
    st.save()
    again = devstate.DeviceState(path, max_devices=128)
    os.remove(path)
    assert len(again.devices) == 128 and _entries(again) == data
    assert again.counters("VNB3K00063") == {"total": 48276} and again.last_identity("10.0.0.73")[0] == "VNB3K00063"


def test_entries_with_a_time_hold_it_first_and_eviction_reads_it():
    st = _load(json.dumps(TRICKY))
    assert st.devices["S9"].startswith('{"t":1764460800,') and devstate._t(st.devices["S9"]) == 1764460800
    assert devstate._t(st.devices["S-no-time"]) == 0 and devstate._t(st.devices["empty"]) == 0
    st.update("T", t=7)
    assert st.devices["T"] == '{"t":7}' and devstate._t(st.devices["T"]) == 7
    # full: an entry without a time goes first, then the smallest t
    st = devstate.DeviceState(max_devices=4)
    st.keep_counters("S3", {"total": 3}, 300)
    st.keep_counters("S1", {"total": 1}, 100)
    st.saw("10.0.0.1", "S1", None, "on")
    st.keep_counters("S2", {"total": 2}, 200)
    st.keep_counters("S4", {"total": 4}, 400)
    assert sorted(st.devices) == ["S1", "S2", "S3", "S4"]
    st.keep_counters("S5", {"total": 5}, 500)
    st.keep_counters("S1", {"total": 11}, 600)     # kept: updating an entry evicts none
    assert sorted(st.devices) == ["S1", "S3", "S4", "S5"] and st.counters("S1") == {"total": 11}


def test_a_file_over_the_bound_keeps_the_newest():
    data = realistic(6)                             # 12 entries: 6 without a time, 6 with t rising
    st = _load(json.dumps(data), max_devices=8)
    assert len(st.devices) == 8
    kept = sorted(k for k in st.devices if not k.startswith("@"))
    assert kept == ["VNB3K%05d" % i for i in range(6)]      # the addresses (no time) went first
    st = _load(json.dumps(data), max_devices=3)
    assert sorted(st.devices) == ["VNB3K00003", "VNB3K00004", "VNB3K00005"]


def test_the_app_keeps_as_many_devices_as_its_board_says():
    from check import fresh_dir, rmtree
    from test_cycle_errors import FakeBoard       # a hal.Board (and hal on the path, as main needs)
    from fleetbox import config, main
    d = fresh_dir(tmp("fleetbox-devload-app"))
    path = d + "/devices.json"
    with open(path, "w") as f:
        f.write(json.dumps(realistic(4)))           # 8 entries
    board = FakeBoard(d)
    assert board.device_memory == devstate.DEVICES_MAX     # hal's default
    board.device_memory = 5
    cfg = config.check({"endpoints": [{"url": "https://127.0.0.1:8443/v1/upload", "name": "liberty"}],
                        "ca": "MAIFAA==", "pins": ["00" * 32], "targets": ["127.0.0.1"]})
    app = main.App(board, cfg, {"serial": "DEVMEM-1", "kid": 1, "device_key": "11" * 32})
    rmtree(d)
    assert app.devices.max == 5 and len(app.devices.devices) == 5
    assert sorted(k for k in app.devices.devices if not k.startswith("@")) == ["VNB3K%05d" % i for i in range(4)]
