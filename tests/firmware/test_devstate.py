"""Device memory (fleetbox.devstate) and atomic_write, on both runtimes: the methods the
collector and the sweep use, the file format of docs/collection.md "Device memory"."""
import binascii
import json
import os

from fleetbox import devstate
from fleetbox.atomicfile import atomic_write
from fleetbox.port import urandom
from check import raises

H = "10.0.0.7"


def _path(name):
    return "/tmp/fleetbox-devmem-%s-%s.json" % (name, binascii.hexlify(urandom(4)).decode())


def _remove(path):
    for p in (path, path + ".tmp"):
        try:
            os.remove(p)
        except OSError:
            pass


def test_a_file_of_the_documented_format_loads_and_reads_through_the_methods():
    path = _path("format")
    data = {"@" + H: {"seen": 1, "sr": "S1", "mc": "aa:bb:cc:dd:ee:ff", "pw": "sleep", "pc": 2, "cred": 1,
                      "rows": {"supplies": 4, "console": 2}, "hrmfp": 0, "wg": ["counters.copy"],
                      "xs": 3, "q": 2, "qs": 1, "nomib": True},
            "S1": {"c": {"total": 100}, "t": 1700000000}}
    with open(path, "w") as f:
        json.dump(data, f)
    st = devstate.DeviceState(path)
    _remove(path)
    assert st.was_seen(H) and st.last_identity(H) == ("S1", "aa:bb:cc:dd:ee:ff")
    assert st.preferred_credential(H) == 2 and st.collect_credential(H) == 1
    assert st.rows(H) == {"supplies": 4, "console": 2} and st.mfp_row(H) == 0
    assert st.web_fields(H) == ["counters.copy"] and st.lacks_printer_mib(H)
    assert st.counters("S1") == {"total": 100}
    assert st.quiet(H) and not st.quiet(H)                    # qs 1: one sweep left alone
    assert st.answers_again(H) and not st.answers_again(H)
    assert [st.skip_extra_agent(H) for _ in range(4)] == [True, True, True, False]


def test_a_damaged_file_is_forgotten_without_a_crash():
    for content in ("{not json", "[1, 2]", '{"@10.0.0.7": 5, "@10.0.0.8": {"seen": 1}}'):
        path = _path("damaged")
        with open(path, "w") as f:
            f.write(content)
        st = devstate.DeviceState(path)
        _remove(path)
        assert not st.was_seen(H) and st.rows(H) == {} and st.preferred_credential(H) == 0
    assert st.was_seen("10.0.0.8")


def test_quiet_backoff_doubles_up_to_its_bound_and_tells_once():
    st = devstate.DeviceState()
    assert st.fell_silent(H) is None                   # never seen: nothing to tell
    st.saw(H, "S1", None, "on")
    assert st.fell_silent(H) == "unreachable"
    skipped = []
    for _ in range(30):
        if st.quiet(H):
            skipped.append(1)
            continue
        skipped.append(0)
        assert st.fell_silent(H) is None               # still silent: no second report
    # probed, skipped 1, probed, skipped 2, 4, then 8 at most between probes
    assert skipped[:16] == [1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1]
    assert max(len(x) for x in "".join(str(s) for s in skipped).split("0")) == devstate.QUIET_MAX
    assert st.answers_again(H) and not st.quiet(H)


def test_asleep_when_last_seen_asleep_and_power_kept_when_a_scan_does_not_read_it():
    st = devstate.DeviceState()
    st.saw(H, "S1", "aa:bb:cc:00:00:01", "sleep")
    st.saw(H, "S1", "aa:bb:cc:00:00:01", None)       # a counters scan: no status read
    assert st.fell_silent(H) == "asleep"


def test_not_a_printer_is_taken_at_its_word_for_np_skip_sweeps_while_its_id_stays():
    st = devstate.DeviceState()
    st.not_a_printer(H, "1.3.6.1.4.1.9")
    skips = [st.not_a_printer_yet(H, "1.3.6.1.4.1.9") for _ in range(devstate.NP_SKIP + 1)]
    assert skips == [True] * devstate.NP_SKIP + [False]
    st.not_a_printer(H, "1.3.6.1.4.1.9")
    assert not st.not_a_printer_yet(H, "1.3.6.1.4.1.11")     # another sysObjectID: checked
    st.a_printer(H)
    assert not st.not_a_printer_yet(H, "1.3.6.1.4.1.9")
    st.saw(H, None, None, "on")
    st.not_a_printer(H, "1.3.6.1.4.1.9")                     # a printer seen before: not marked
    assert not st.not_a_printer_yet(H, "1.3.6.1.4.1.9")


def test_printer_mib_credentials_web_fields_written_only_on_change():
    st = devstate.DeviceState()
    st.keep_printer_mib(H, True)
    st.prefer_credential(H, 0)
    assert st.devices == {}                                  # first-time answers: nothing written
    st.keep_printer_mib(H, False)
    st.prefer_credential(H, 1)
    assert st.lacks_printer_mib(H) and st.preferred_credential(H) == 1
    st.keep_web_fields(H, set("counters.f%02d" % i for i in range(20)))
    assert len(st.web_fields(H)) == devstate.WEB_FIELDS_MAX and st.web_fields(H)[0] == "counters.f00"


def test_no_memory_gives_first_time_answers_and_keeps_nothing():
    st = devstate.NoMemory()
    st.saw(H, "S1", None, "sleep")
    st.keep_counters("S1", {"total": 5}, 0)
    st.not_a_printer(H, "x")
    assert not st.was_seen(H) and st.counters("S1") is None and st.fell_silent(H) is None
    assert not st.not_a_printer_yet(H, "x") and not st.quiet(H) and st.preferred_credential(H) == 0


def test_save_round_trip_through_atomic_write():
    path = _path("save")
    st = devstate.DeviceState(path, max_devices=2)
    st.keep_counters("S1", {"total": 1, "vendor": {"x": 1}}, 10)
    st.keep_rows(H, {"supplies": 3})
    st.save()
    again = devstate.DeviceState(path)
    names = os.listdir("/tmp")
    _remove(path)
    assert again.counters("S1") == {"total": 1} and again.rows(H) == {"supplies": 3}
    assert path.rsplit("/", 1)[1] + ".tmp" not in names


def test_atomic_write_bytes_text_callable_and_a_failure_raises():
    path = _path("atomic")
    assert atomic_write(path, b"\x00\x01") == 2
    with open(path, "rb") as f:
        assert f.read() == b"\x00\x01"
    atomic_write(path, "text")
    atomic_write(path, lambda f: f.write("streamed"))
    with open(path) as f:
        assert f.read() == "streamed"
    raises(OSError, atomic_write, "/nonexistent-dir-fleetbox/x", b"1")
    _remove(path)
