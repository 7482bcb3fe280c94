"""fleetbox.records, profiles (matching, rules), devstate: pure decoding on both runtimes."""
from fleetbox import assemble, devstate, profiles, readplan, records, sanity
from check import tmp
from fleetbox.sweep import Merger


def test_text_encodings():
    t = records.text
    assert t(b"Black Toner") == "Black Toner"
    assert t(b"Black Toner\x00\x00\x00") == "Black Toner"              # trailing NULs
    assert t(b"  Cyan  ") == "Cyan"
    assert t(b"\xff\xfeB\x00l\x00a\x00c\x00k\x00") == "Black"          # UTF-16LE with BOM
    assert t(b"\xfe\xff\x00B\x00l\x00u\x00e") == "Blue"                # UTF-16BE with BOM
    assert t(b"T\x00o\x00n\x00e\x00r\x00") == "Toner"                  # UTF-16LE, no BOM
    assert t(b"\x00T\x00o\x00n\x00e\x00r") == "Toner"                  # UTF-16BE, no BOM
    assert t(b"Gr\xfcn") == "Gr\u00fcn"                                  # Latin-1 (not UTF-8)
    assert t("Gr\u00fcn".encode("utf-8")) == "Gr\u00fcn"                 # UTF-8
    assert t(b"") is None and t(b"\x00\x00") is None and t(None) is None and t(5) is None
    # hex strings, only when asked and only when they decode to text
    assert t(b"426C61636B20546F6E6572", True) == "Black Toner"
    assert t(b"426C61636B20546F6E657200", True) == "Black Toner"
    assert t(b"426C61636B20546F6E6572") == "426C61636B20546F6E6572"
    assert t(b"12345678", True) == "12345678"                          # decodes to control chars: kept
    assert t(b"CAFE", True) == "CAFE"                                  # too short / no letters


def test_number_and_ieee1284():
    assert records.number(5) == 5
    assert records.number(b"1920 INCHES, 4876 CENTIMETERS") == 1920
    assert records.number(b"12,345 pages") == 12345
    assert records.number(b"none") is None and records.number(None) is None
    d = "MFG:Hewlett-Packard;CMD:PJL,PCL;MDL:HP Color LaserJet M452nw;CLS:PRINTER;"
    assert records.ieee1284(d, "MDL") == "HP Color LaserJet M452nw"
    assert records.ieee1284(d, "mfg") == "Hewlett-Packard"
    assert records.ieee1284(d, "DES") is None and records.ieee1284(None, "MDL") is None


def test_clean_model():
    c = records.clean_model
    assert c("Xerox AltaLink C8045; SS 100.002", ["Xerox "]) == "AltaLink C8045"
    assert c("Brother MFC-L2710DW series", ["Brother "], [" series"]) == "MFC-L2710DW"
    assert c("Canon iR-ADV C3525", ["Canon "], (), [["iR-ADV ", "imageRUNNER ADVANCE "]]) == \
        "imageRUNNER ADVANCE C3525"
    assert c("Lexmark T640 version NS.NP.N219 kernel 2.6.6", ["Lexmark "]) == "T640"
    assert c("Develop ineo  280", ["Develop "]) == "ineo 280"
    assert c("HP", ["HP "]) == "HP"                                   # never strips to nothing
    assert c(None) is None and c("") is None


def test_supplies_special_values_and_vendor_codes():
    rows = {
        1: {3: 1, 5: 3, 6: b"Black Toner", 7: 19, 8: 100, 9: 63},
        2: {3: 2, 5: 3, 6: b"Cyan Toner", 7: 7, 8: 6000, 9: -3},
        3: {5: 4, 6: b"Waste Toner", 7: 19, 8: -2, 9: -2},
        4: {5: 9, 6: b"Drum", 7: 7, 8: 0, 9: 500},                    # max 0 (third-party): no division
        5: {5: 3, 6: b"Magenta", 7: 7, 8: 1000, 9: 1200},             # level above max: clamped
        6: {5: 3, 6: b"Yellow", 7: 7, 8: 1000, 9: 0},
        7: {5: 3, 6: b"Black 2", 7: 7, 8: 1000, 9: 40},
        8: {5: 3, 6: b"Light", 7: 7, 8: 1000, 9: -1},
        9: {6: b"Fusing Unit", 8: 100, 9: 55},                         # no type column: from the words
        10: {5: 3, 6: b"Ricoh toner", 8: 100, 9: -100},
    }
    s = records.build_supplies(rows, {1: "black", 2: "cyan"}, {-100: "low"})
    by = {x["index"]: x for x in s}
    assert [x["index"] for x in s] == list(range(1, 11))
    assert by[1]["color"] == "black" and by[1]["percent"] == 63 and by[1]["state"] == "ok"
    assert by[1]["unit"] == "percent" and by[1]["kind"] == "toner" and by[1]["type_code"] == 3
    assert by[2]["level"] is None and by[2]["state"] == "some-remaining" and by[2]["max"] == 6000
    assert by[3]["kind"] == "waste" and by[3]["state"] == "unknown" and by[3]["max"] is None
    assert by[4]["max"] is None and by[4]["percent"] is None and by[4]["level"] == 500
    assert by[5]["percent"] == 100 and by[5]["level"] == 1200
    assert by[6]["state"] == "empty" and by[6]["percent"] == 0
    assert by[7]["state"] == "low" and by[7]["percent"] == 4
    assert by[8]["state"] == "unrestricted"
    assert by[9]["kind"] == "fuser" and by[9]["type_code"] is None and by[9]["percent"] == 55
    assert by[10]["state"] == "low" and by[10]["level"] is None      # Ricoh -100: near end
    assert records.percent_of(11501, 12000) == 96 and records.percent_of(1, 0) is None


def test_errors_alerts_and_mac():
    assert records.decode_errors(b"\x80\x00") == ["lowPaper"]
    assert records.decode_errors(b"\x05\x80") == ["jammed", "serviceRequested", "inputTrayMissing"]
    assert records.decode_errors(b"\x00") == [] and records.decode_errors(None) == []
    a = records.decode_alerts({5: {2: 4, 4: 5, 7: 503, 8: b""}, 2: {2: 3, 4: 11, 7: 1101, 8: b"Toner empty"},
                               9: {2: 1, 4: 99, 7: 4242}})
    assert a == [{"severity": "critical", "group": "markerSupplies", "code": "markerTonerEmpty",
                  "description": "Toner empty"},
                 {"severity": "warning", "group": "generalPrinter", "code": "poweredUp", "description": None},
                 {"severity": "other", "group": "other", "code": 4242, "description": None}]
    assert records.mac_text(b"\x00\x1e\x8f\x52\xa1\x07") == "00:1e:8f:52:a1:07"
    assert records.mac_text(b"\x00" * 6) is None and records.mac_text(b"\x01\x02") is None


def test_counter_sanity_check():
    c = sanity.check_counters
    assert c(None, {"total": 1000, "print": 600, "copy": 400}) == []
    assert c(None, {"total": 1000, "print": 900, "copy": 400}) == ["functions>total"]
    assert c(None, {"total": 1000, "mono": 700, "color": 200}) == ["mono+color!=total"]
    assert c({"total": 1000, "copy": 50}, {"total": 990, "copy": 60}) == ["backwards:total"]
    assert c({"total": 100000}, {"total": 12}) == ["reset:total"]
    assert c({"total": 10}, {"total": 10}) == []


PROFILES = [
    {"vendor": "Kyocera", "enterprises": [1347], "descr": ["KYOCERA", "TA_UTAX"],
     "model": [{"oid": "1.3.6.1.4.1.1347.43.5.1.1.1.1"}, {"hr": True}],
     "brand": [{"sysdescr": True, "after": "TA_", "before": " "}],
     "counters": {"total": {"oid": "1.3.6.1.4.1.1347.43.10.1.1.12.1.1"},
                  "mono": {"sum": ["1.3.6.1.4.1.1347.1", "1.3.6.1.4.1.1347.2"]},
                  "vendor": {"len": {"oid": "1.3.6.1.4.1.1347.3", "text": True}}}},
    {"vendor": "HP", "enterprises": [11], "descr": ["HP "],
     "model": [{"hr": True}, {"oid": "1.3.6.1.4.1.11.7", "ieee1284": "MDL"}],
     "model_prefixes": ["HP "]},
    {"vendor": "Ricoh", "enterprises": [367], "descr": ["RICOH", "NRG"],
     "brand": [{"sysdescr": True, "before": " ", "only": ["NRG", "Savin"]}]},
]


def test_profile_match_precedence():
    m = profiles.match
    assert m(PROFILES, "1.3.6.1.4.1.1347.41", "HP ETHERNET MULTI-ENVIRONMENT")["vendor"] == "Kyocera"
    assert m(PROFILES, "1.3.6.1.4.1.683.6", "HP LaserJet")["vendor"] == "HP"
    assert m(PROFILES, None, "NRG SP 4210N")["vendor"] == "Ricoh"
    assert m(PROFILES, "1.3.6.1.4.1.9.1", "Cisco IOS") is None
    assert profiles.enterprise("1.3.6.1.4.1.2435.2.3.9.1") == 2435 and profiles.enterprise("1.3.6.1.2.1") is None


def test_profile_rules_and_counters():
    ky = PROFILES[0]
    assert profiles.oids(ky) == ["1.3.6.1.4.1.1347.43.5.1.1.1.1", "1.3.6.1.4.1.1347.43.10.1.1.12.1.1",
                                 "1.3.6.1.4.1.1347.1", "1.3.6.1.4.1.1347.2", "1.3.6.1.4.1.1347.3"]
    get = {"1.3.6.1.4.1.1347.1": 10, "1.3.6.1.4.1.1347.2": 5, "1.3.6.1.4.1.1347.3": b"77 m",
           "1.3.6.1.4.1.1347.43.10.1.1.12.1.1": -1}
    ctx = {"get": get, "hr": "P-4532DN", "sysdescr": "TA_UTAX Printing System"}
    assert profiles.first_text(ky, "brand", ctx) == ("UTAX", "profile Kyocera: sysDescr")
    assert profiles.first_text(ky, "model", ctx) == ("P-4532DN", "profile Kyocera: hrDeviceDescr")
    out, src = {}, {}
    profiles.counters(ky, ctx, out, src)
    assert out == {"mono": 15, "vendor": {"len": 77}}                   # -1 total is no counter
    assert src["counters.mono"].startswith("profile Kyocera: sum(")
    hp = PROFILES[1]
    ctx = {"get": {}, "hr": None, "sysdescr": "HP ETHERNET"}
    assert profiles.pending(hp, ctx) == ["1.3.6.1.4.1.11.7"]           # asked only when hr gave nothing
    ctx["get"]["1.3.6.1.4.1.11.7"] = b"MFG:HP;MDL:HP LaserJet M404;"
    model, src = assemble.derive_model(hp, ctx)
    assert model == "LaserJet M404" and src == "profile HP: 1.3.6.1.4.1.11.7"
    ri = PROFILES[2]
    assert profiles.first_text(ri, "brand", {"get": {}, "sysdescr": "RICOH MP 3053"})[0] is None
    assert profiles.first_text(ri, "brand", {"get": {}, "sysdescr": "NRG SP 4210N 1.05"})[0] == "NRG"


def test_derive_model_fallbacks():
    ctx = {"get": {}, "hr": None, "sysdescr": "KYOCERA Document Solutions Printing System"}
    assert assemble.derive_model(PROFILES[0], ctx) == (None, None)     # an agent name, not a model
    ctx = {"get": {}, "hr": None, "sysdescr": "RICOH Aficio MP C3002 2.20"}
    assert assemble.derive_model(PROFILES[2], ctx)[0] == "Aficio MP C3002"   # vendor name and version dropped
    ctx = {"get": {}, "hr": "Brother MFC-L2710DW series", "sysdescr": "Brother NC-8300h"}
    assert assemble.derive_model(None, ctx) == ("Brother MFC-L2710DW series", "hrDeviceDescr")


def test_profile_file_checked():
    from check import raises
    raises(profiles.ProfileError, profiles.check, {"format": 2, "profiles": []})
    raises(profiles.ProfileError, profiles.check, {"format": 1, "profiles": [{"enterprises": [1]}]})
    assert profiles.check({"format": 1, "profiles": PROFILES}) is PROFILES
    assert len(profiles.load(["/nonexistent/profiles.json"])) == 0


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_profile_library_reads_one_vendor_at_a_time():
    import json
    import os
    from check import raises
    path = tmp("fleetbox-test-profiles.json")
    lines = [json.dumps({"format": 1, "profiles": len(PROFILES)})] + [json.dumps(p) for p in PROFILES]
    _write(path, "\n".join(lines) + "\n")
    lib = profiles.load(["/nonexistent", path])
    assert lib.vendors() == ["Kyocera", "HP", "Ricoh"] and lib.cache == {}
    p = profiles.match(lib, "1.3.6.1.4.1.367.1.1", "RICOH MP 3053")
    assert p == PROFILES[2] and list(lib.cache) == ["Ricoh"]       # only the matched vendor read
    assert profiles.match(lib, "1.3.6.1.4.1.11.2.3.9.1", "HP ETHERNET")["model_prefixes"] == ["HP "]
    assert profiles.match(lib, None, "Cisco IOS") is None
    _write(path, "\n".join(lines[:2]) + "\n")                     # truncated: refused, not half-used
    raises(profiles.ProfileError, profiles.load, [path])
    _write(path, json.dumps({"format": 9, "profiles": 0}) + "\n")
    raises(profiles.ProfileError, profiles.load, [path])
    os.remove(path)


def test_device_state_bounded_and_saved():
    import os
    path = tmp("fleetbox-test-devstate.json")
    try:
        os.remove(path)
    except OSError:
        pass
    st = devstate.DeviceState(path, max_devices=3)
    for i in range(5):
        st.keep_counters("S%d" % i, {"total": 100 + i, "vendor": {"x": 1}}, 1000 + i)
    assert sorted(st.devices) == ["S2", "S3", "S4"]                    # the oldest forgotten
    assert st.counters("S4") == {"total": 104}
    st.save()
    again = devstate.DeviceState(path, max_devices=3)
    assert again.counters("S3") == {"total": 103}
    os.remove(path)


def test_merger_by_serial_or_mac():
    m = Merger(limit=4)
    assert m.first_ip({"ip": "10.0.0.1", "serial": "X1", "manufacturer": "HP", "mac": "aa:bb:cc:00:00:01"}) is None
    assert m.first_ip({"ip": "10.0.0.2", "serial": "X1", "manufacturer": "HP", "mac": None}) == "10.0.0.1"
    assert m.first_ip({"ip": "10.0.0.3", "serial": None, "mac": "aa:bb:cc:00:00:01"}) == "10.0.0.1"
    assert m.first_ip({"ip": "10.0.0.4", "serial": "X1", "manufacturer": "Canon", "mac": None}) is None


def test_config_scan_kinds_and_pacing():
    from check import raises
    from fleetbox import config
    c = config.check({"intervals": {"full": 3600, "counters": 900, "alerts": 120}})
    assert c["intervals"]["alerts"] == 120 and c["pace_ms"] >= 0 and c["workers"] == 0    # 0: as the heap allows
    assert config.check({"workers": 3})["workers"] == 3
    raises(config.ConfigError, config.check, {"workers": -1})
    assert set(config.SCAN_KINDS) == set(readplan.KINDS)
    raises(config.ConfigError, config.check, {"intervals": {"weekly": 600}})
    raises(config.ConfigError, config.check, {"pace_ms": -1})
