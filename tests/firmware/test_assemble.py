"""fleetbox.assemble: record fields from values already read, no sockets; both runtimes."""
from fleetbox import assemble, features, readplan
from fleetbox.oids import (ENT_FIRMWARE, ENT_MODEL, ENT_SERIAL, PRT_COLORANTS, PRT_LIFE_COUNT,
                           PRT_MARK_TECH, SYS_NAME, SYS_UPTIME)
from check import raises

HP = {"vendor": "HP", "model": [], "technology": "laser"}


def test_identity_from_entity_mib_when_nothing_else_gives_a_serial():
    sources = {}
    follow = {ENT_SERIAL: b"CN12345", ENT_MODEL: b"HP LaserJet M404", ENT_FIRMWARE: b"2.7"}
    ctx = {"get": {}, "hr": None, "sysdescr": "HP ETHERNET MULTI-ENVIRONMENT"}
    got = assemble.identity(HP, ctx, follow, None, True, None, sources)
    assert got == ("HP", "LaserJet M404", "CN12345", "2.7", None), got
    assert sources == {"manufacturer": "profile HP", "serial": "entPhysicalSerialNum",
                       "model": "entPhysicalModelName", "firmware": "entPhysicalFirmwareRev"}


def test_identity_keeps_the_printer_mib_serial_and_the_printer_row_descr():
    sources = {"serial": "prtGeneralSerialNumber"}
    ctx = {"get": {}, "hr": "HP Color LaserJet M452nw", "sysdescr": None}
    got = assemble.identity(HP, ctx, {}, "VNB3K01234", False, 1, sources)
    assert got == ("HP", "Color LaserJet M452nw", "VNB3K01234", None, None), got
    assert sources["serial"] == "prtGeneralSerialNumber" and sources["model"] == "hrDeviceDescr.1"


def test_base_record_identification_fields():
    rec = assemble.base_record("10.0.0.5", 161, {SYS_UPTIME: 12345, SYS_NAME: b"NPI1"}, "aa:bb:cc:dd:ee:ff",
                               "HP", "M404", "S1", None, "1.3.6.1.4.1.11", "descr", brand="Develop")
    assert (rec["ip"], rec["port"], rec["mac"], rec["uptime_s"]) == ("10.0.0.5", 161, "aa:bb:cc:dd:ee:ff", 123)
    assert rec["hostname"] == "NPI1" and rec["location"] is None and rec["brand"] == "Develop"
    assert "brand" not in assemble.base_record("h", 1, {}, None, None, None, None, None, None, None)


def test_status_sleeping_printer_is_asleep_never_down():
    console = {1: {2: b"Energy Saver Mode"}, 2: {2: b""}}
    st = assemble.status([5, 3, b"\x40"], console, {})
    assert st["device"] == "down" and st["printer"] == "idle" and st["errors"] == ["noPaper"]
    assert st["display"] == ["Energy Saver Mode"] and st["power"] == "sleep"
    assert st["reachability"] == "asleep"


def test_status_power_saver_alert_and_unknown_printer_row():
    st = assemble.status(None, {}, {1: {2: 4, 4: 5, 7: 23, 8: b"sleeping"}})
    assert st["device"] is None and st["printer"] is None and st["errors"] == []
    assert st["alerts"][0]["code"] == "subunitPowerSaver" and st["power"] == "sleep"
    awake = assemble.status([2, 4, b"\x00\x00"], {1: {2: b"Ready"}}, {})
    assert (awake["device"], awake["printer"], awake["power"], awake["reachability"]) == \
        ("running", "printing", "on", "reachable")


def test_counters_life_count_only_when_sane():
    counters, sources = {}, {}
    assemble.life_count({PRT_LIFE_COUNT: 4711}, counters, sources)
    assert counters == {"total": 4711} and sources == {"counters.total": "prtMarkerLifeCount"}
    counters, sources = {}, {}
    assemble.life_count({PRT_LIFE_COUNT: -2}, counters, sources)
    assert counters == {} and sources == {}


def test_supplies_parts_scan_leaves_out_toner_and_ink():
    rows = {1: {3: 1, 5: 3, 6: b"Black Toner", 7: 19, 8: 100, 9: 40},
            2: {3: 0, 5: 9, 6: b"Drum", 7: 7, 8: 50000, 9: 10000}}
    full, colorants = assemble.supplies(rows, None, {1: {4: b"black"}}, None, "full")
    assert colorants == {1: "black"} and rows[1][6] == "Black Toner"      # decoded in place
    assert [(s["kind"], s["color"], s["percent"]) for s in full] == [("toner", "black", 40), ("drum", None, 20)]
    parts, _ = assemble.supplies(rows, None, {}, None, "parts")
    assert [s["kind"] for s in parts] == ["drum"]


def test_supplies_from_the_flash_cache_and_when_it_still_fits():
    cached = {"age": 1, "rows": {"1": [3, "Black", 19, 100, "black", 40]}}
    assert assemble.statics_fit(cached, {1: {9: 38}})
    assert assemble.statics_fit(cached, {1: {9: 45}})          # +5 of 100: noise
    assert not assemble.statics_fit(cached, {1: {9: 46}})      # a new cartridge
    assert not assemble.statics_fit(cached, {1: {9: 40}, 2: {9: 1}})   # rows differ
    rows = {1: {9: 38}}
    got, colorants = assemble.supplies(rows, cached, {}, None, "supplies")
    assert rows == {1: {9: 38, 5: 3, 6: "Black", 7: 19, 8: 100, 3: "black"}} and colorants == {}
    assert (got[0]["color"], got[0]["description"], got[0]["percent"]) == ("black", "Black", 38)


def test_shape_colour_duplex_technology_typology():
    sources = {}
    assert features.shape(None, {PRT_COLORANTS: 4, PRT_MARK_TECH: 5}, {1: {9: 4}, 2: {9: 3}}, [], "HP",
                          sources) == ("laser", True, True)
    assert sources == {"duplex": "prtMediaPathType", "color": "prtMarkerProcessColorants",
                       "technology": "prtMarkerMarkTech"}
    cyan = [{"kind": "toner", "color": "cyan", "description": "C"}]
    sources = {}
    assert features.shape(HP, {}, {}, cyan, "HP", sources) == ("laser", True, None)
    assert sources == {"color": "supplies", "technology": "profile HP"}
    assert features.shape(None, {}, {}, [], None, {}) == (None, None, None)
    assert assemble.typology({}, "M404", None, {"copy": 3}) == ("mfp", "counters.copy")
    assert assemble.typology({}, "M404", "HP MFP", {}) == ("mfp", "sysDescr")
    assert assemble.typology({}, "M404", None, {}) == ("printer", "no copier, scanner or fax seen")
    assert assemble.typology({}, None, None, {}) == ("unknown", None)


def test_read_plan_per_scan_kind():
    kinds = {k: readplan.ReadPlan(k) for k in readplan.KINDS}
    assert [k for k in readplan.KINDS if kinds[k].counters] == ["full", "counters"]
    assert [k for k in readplan.KINDS if kinds[k].status] == ["full", "alerts"]
    assert [k for k in readplan.KINDS if kinds[k].supplies] == ["full", "supplies", "parts"]
    raises(ValueError, readplan.ReadPlan, "weekly")
    oids, colorant, ip_key = readplan.scalars(kinds["counters"], "10.0.0.9", None, None, [])
    assert PRT_LIFE_COUNT in oids and colorant is None and ip_key.endswith(".10.0.0.9")
    assert readplan.scalars(kinds["supplies"], "printer.local", None, None, [])[1:] == \
        ("1.3.6.1.2.1.43.12.1.1.4.1.1", None)
