"""The device's features, each from its best source with provenance (fleetbox.features:
technology, duplex, install_date; first_seen; profile model rules and text patterns) and
the counter sanity check over every counter (fleetbox.sanity)."""
from fleetbox import devstate, features, profiles, records, sanity
from fleetbox.oids import PRT_MARK_TECH

HP = {"vendor": "HP", "model_rules": [
    {"re": "LaserJet", "technology": "laser"},
    {"re": "OfficeJet|DeskJet", "technology": "inkjet"},
    {"re": " [A-Z]*[0-9]+[a-z]*d[a-z]*$", "duplex": True}]}
ZEBRA = {"vendor": "Zebra", "technology": "thermal", "model_rules": [{"re": "^(TLP|ZD)", "duplex": False}]}
SAMSUNG = {"vendor": "Samsung", "duplex_words": ["Simplex/Duplex"]}


def supply(code, desc="x"):
    return {"type_code": code, "description": desc, "kind": records.supply_kind(code), "color": None}


def test_technology_marker_first_then_supplies_then_model_then_vendor():
    s = {}
    assert features.technology(HP, {PRT_MARK_TECH: 12}, [supply(3)], "Color LaserJet M452nw", "HP", s) == "inkjet"
    assert s == {"technology": "prtMarkerMarkTech"}
    s = {}
    # unknown(2) says nothing: the toner does
    assert features.technology(HP, {PRT_MARK_TECH: 2}, [supply(9), supply(3)], None, "HP", s) == "laser"
    assert s == {"technology": "supplies (prtMarkerSuppliesType)"}
    s = {}
    assert features.technology(None, {}, [supply(6)], None, None, s) == "inkjet"
    s = {}
    assert features.technology(None, {}, [supply(None, "Toner (Cyan)")], None, None, s) == "laser"
    assert s == {"technology": "supplies (prtMarkerSuppliesDescription)"}
    s = {}
    # "Black Cartridge" proves nothing: the model rule decides
    assert features.technology(HP, {}, [supply(None, "Black Cartridge HP CF410A")], "Color LaserJet M452nw",
                               "HP", s) == "laser"
    assert s == {"technology": "profile HP: model rule 1"}
    s = {}
    assert features.technology(ZEBRA, {}, [], "TLP 2824 Plus", "Zebra", s) == "thermal"
    assert s == {"technology": "profile Zebra"}
    s = {}
    assert features.technology(None, {}, [], "M1", None, s) is None and s == {}


def test_supplies_that_disagree_or_say_nothing_give_no_technology():
    assert features.supplies_technology([supply(3), supply(5)]) == (None, None)
    assert features.supplies_technology([supply(9), supply(15), supply(1, "Ozone Filter")]) == (None, None)
    assert features.supplies_technology([supply(7)]) == (None, None)      # inkRibbon: impact or thermal
    assert features.supplies_technology([supply(13)]) == ("thermal", "prtMarkerSuppliesType")
    assert features.supplies_technology([supply(12)]) == ("solid-ink", "prtMarkerSuppliesType")
    assert features.supplies_technology([supply(2, "Black Ink Supply")])[0] == "inkjet"
    assert features.supplies_technology([supply(2, "Waste Inkpad")]) == (None, None)  # "ink" only as a word
    assert features.supplies_technology(None) == (None, None)


def test_duplex_paths_counters_words_model_rules_in_that_order():
    s = {}
    assert features.duplex(HP, {1: {9: 4}}, {}, "M452nw", s) is True and s == {"duplex": "prtMediaPathType"}
    s = {}
    # paths without a duplex one, but the device has printed both sides: the counter wins
    assert features.duplex(HP, {1: {9: 3}}, {"duplex": 41020}, None, s) is True
    assert s == {"duplex": "counters.duplex > 0"}
    s = {}
    assert features.duplex(HP, {1: {9: 3}}, {"duplex": 0}, "LaserJet M404dn", s) is False
    assert s == {"duplex": "prtMediaPathType"}         # the installed paths beat the model's name
    s = {}
    texts = [(1, "Samsung M408x Series"), (8, "Ethernet 1000 Mbps(Full Duplex)"),
             (9, "Samsung Duplex Auto Document Feeder"), (2, "Samsung Multixpress Copy Service, Simplex/Duplex")]
    assert features.duplex(SAMSUNG, None, None, None, s, texts) is True and s == {"duplex": "hrDeviceDescr.2"}
    assert features.duplex(SAMSUNG, None, None, None, {}, texts[:3]) is None
    s = {}
    assert features.duplex(HP, None, {}, "Color LaserJet Pro M252dw", s) is True
    assert s == {"duplex": "profile HP: model rule 3"}
    assert features.duplex(HP, None, {}, "Color LaserJet M452nw", {}) is None     # no "d": unknown, not False
    s = {}
    assert features.duplex(ZEBRA, None, None, "TLP 2824 Plus", s) is False
    assert s == {"duplex": "profile Zebra: model rule 1"}
    assert features.duplex(ZEBRA, None, {"duplex": 3}, "TLP 2824 Plus", {}) is True   # never against a counter


def test_text_rule_patterns():
    ctx = {"get": {}, "hr": None,
           "sysdescr": "OKI OkiLAN 9450g Rev.00.69 PrintServer: Attached to MC873 Rev.07.87 : Copyright"}
    rule = {"sysdescr": True, "re": "Attached to [^ ]+ Rev\\.([0-9][0-9.]*)"}
    assert profiles.extract_text(rule, ctx) == "07.87"
    ctx["sysdescr"] = "Samsung M4080FX; V11.01.03.04_02-27-2017;Engine V1.00.06"
    assert profiles.extract_text({"sysdescr": True, "re": "; *(V[0-9][0-9.]*)"}, ctx) == "V11.01.03.04"
    assert profiles.extract_text({"sysdescr": True, "re": "; SS ([0-9.]+)"}, ctx) is None
    assert features.model_rule(HP, None, "duplex") == (None, None)
    assert features.model_rule(HP, "DeskJet 2720", "technology") == ("inkjet", "profile HP: model rule 2")


def test_install_date_from_the_vendor_only_and_first_seen_kept_once():
    lex = {"vendor": "Lexmark", "install_date": [{"oid": "1.3.6.1.4.1.641.6.2.3.1.7.1"}]}
    s = {}
    ctx = {"get": {"1.3.6.1.4.1.641.6.2.3.1.7.1": b"\x07\xe3\x04\x11\x08\x00\x00\x00"}, "hr": None, "sysdescr": None}
    assert features.install_date(lex, ctx, s) == "2019-04-17"
    assert s == {"install_date": "profile Lexmark: 1.3.6.1.4.1.641.6.2.3.1.7.1"}
    ctx["get"]["1.3.6.1.4.1.641.6.2.3.1.7.1"] = b"2021-11-02T10:00:00"
    assert features.install_date(lex, ctx, {}) == "2021-11-02"
    for junk in (b"", b"unknown", 5, None, b"\x00\x00\x01\x01\x00\x00\x00\x00", b"2021-13-02"):
        ctx["get"]["1.3.6.1.4.1.641.6.2.3.1.7.1"] = junk
        s = {}
        assert features.install_date(lex, ctx, s) is None and s == {}, junk
    assert features.install_date(None, ctx, {}) is None
    st = devstate.DeviceState()
    assert st.first_seen("SER1", 1795000000) == 1795000000
    assert st.first_seen("SER1", 1795090000) == 1795000000
    assert st.get("SER1") == {"f": 1795000000}
    st.keep_counters("SER1", {"total": 5}, 1795090000)
    assert st.first_seen("SER1", 1796000000) == 1795000000


def test_counter_sanity_covers_every_counter_the_box_keeps():
    c = sanity.check_counters
    # every key a profile can fill is checked for going backwards and kept for the next reading
    assert profiles.COUNTER_KEYS is records.COUNTER_KEYS is devstate.COUNTERS_KEPT
    for k in profiles.COUNTER_KEYS:
        assert c({k: 5000}, {k: 4990}) == ["backwards:" + k], k
        assert c({k: 5000}, {k: 4}) == ["reset:" + k], k
    sharp = {"total": 121104, "mono": 91164, "color": 29940, "print": 82214, "copy": 38804, "scan": 13534,
             "duplex": 41020, "print_mono": 53631, "print_color": 28583, "copy_mono": 37485, "copy_color": 1319,
             "scan_mono": 6170, "scan_color": 7364}          # the Sharp MX-3570N recording: all consistent
    assert c(None, sharp) == []
    assert c(None, dict(sharp, print_mono=60000)) == ["functions>mono", "print_mono+print_color!=print"]
    assert c(None, dict(sharp, copy_color=9000)) == ["functions>color", "copy_mono+copy_color!=copy"]
    assert c(None, dict(sharp, scan_color=0)) == ["scan_mono+scan_color!=scan"]
    assert c(None, {"total": 1000, "a3": 300, "a4": 800}) == ["sizes>total"]
    assert c(None, {"total": 1000, "duplex": 1200}) == ["duplex>total"]
    assert c(None, {"total": 1000, "a3": 300, "a4": 700, "duplex": 400}) == []
