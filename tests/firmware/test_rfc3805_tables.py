"""records' supply-type and marker-technology tables, value by value against RFC 3805.

The two enumerations below are copied from RFC 3805 "Printer MIB v2" (June 2004), the
IANA-PRINTER-MIB module in it: PrtMarkerSuppliesTypeTC and PrtMarkerMarkTechTC, with
the RFC's names. Each name is then given the kind / technology it must decode to, so a
slip in records' tables (an index shifted by one, say) fails here name by name.
"""
from fleetbox import features, records

# RFC 3805, IANA-PRINTER-MIB, PrtMarkerSuppliesTypeTC ::= TEXTUAL-CONVENTION ... SYNTAX INTEGER {
RFC3805_SUPPLIES_TYPE = """
    other(1), unknown(2),
    toner(3), wasteToner(4), ink(5), inkCartridge(6), inkRibbon(7), wasteInk(8), opc(9),
    developer(10), fuserOil(11), solidWax(12), ribbonWax(13), wasteWax(14), fuser(15),
    coronaWire(16), fuserOilWick(17), cleanerUnit(18), fuserCleaningPad(19),
    transferUnit(20), tonerCartridge(21), fuserOiler(22),
    water(23), wasteWater(24), glueWaterAdditive(25), wastePaper(26), bindingSupply(27),
    bandingSupply(28), stitchingWire(29), shrinkWrap(30), paperWrap(31), staples(32),
    inserts(33), covers(34)
"""
# The same TC as IANA later extended it (values registered after the RFC).
IANA_SUPPLIES_TYPE_ADDED = "matteToner(35), matteInk(36)"

# RFC 3805, IANA-PRINTER-MIB, PrtMarkerMarkTechTC ::= TEXTUAL-CONVENTION ... SYNTAX INTEGER {
RFC3805_MARK_TECH = """
    other(1), unknown(2),
    electrophotographicLED(3), electrophotographicLaser(4), electrophotographicOther(5),
    impactMovingHeadDotMatrix9pin(6), impactMovingHeadDotMatrix24pin(7),
    impactMovingHeadDotMatrixOther(8), impactMovingHeadFullyFormed(9), impactBand(10),
    impactOther(11), inkjetAqueous(12), inkjetSolid(13), inkjetOther(14), pen(15),
    thermalTransfer(16), thermalSensitive(17), thermalDiffusion(18), thermalOther(19),
    electroerosion(20), electrostatic(21), photographicMicrofiche(22),
    photographicImagesetter(23), photographicOther(24), ionDeposition(25), eBeam(26),
    typesetter(27)
"""

# The record's kind for each RFC name (shared/spec/device-record.md, supplies.kind).
KIND_OF = {
    "other": "other", "unknown": "other",
    "toner": "toner", "tonerCartridge": "toner", "matteToner": "toner",
    "ink": "ink", "inkCartridge": "ink", "solidWax": "ink", "matteInk": "ink",
    "inkRibbon": "ribbon", "ribbonWax": "ribbon",
    "wasteToner": "waste", "wasteInk": "waste", "wasteWax": "waste", "wasteWater": "waste",
    "wastePaper": "waste",
    "opc": "drum", "developer": "developer",
    "fuser": "fuser", "fuserOil": "fuser", "fuserOilWick": "fuser", "fuserOiler": "fuser",
    "cleanerUnit": "cleaner", "fuserCleaningPad": "cleaner",
    "transferUnit": "transfer",
    "staples": "staples", "stitchingWire": "staples",
    "coronaWire": "other", "water": "other", "glueWaterAdditive": "other", "bindingSupply": "other",
    "bandingSupply": "other", "shrinkWrap": "other", "paperWrap": "other", "inserts": "other",
    "covers": "other",
}


def tech_of(name):
    """The record's technology for each RFC name: None where the device says nothing."""
    if name in ("other", "unknown"):
        return None
    if name.startswith("electrophotographic"):
        return "laser"
    if name.startswith("impact"):
        return "impact"
    if name == "inkjetSolid":
        return "solid-ink"
    if name.startswith("inkjet"):
        return "inkjet"
    if name.startswith("thermal"):
        return "thermal"
    return "other"   # pen, electroerosion, electrostatic, photographic*, ionDeposition, eBeam, typesetter


def enumeration(text):
    """[(code, name)] of an SMI enumeration's text "name(code), ..."."""
    out = []
    for item in text.replace("\n", " ").split(","):
        item = item.strip()
        name, code = item[:-1].split("(")
        out.append((int(code), name))
    return out


def test_supply_types_value_by_value():
    names = enumeration(RFC3805_SUPPLIES_TYPE) + enumeration(IANA_SUPPLIES_TYPE_ADDED)
    assert [c for c, _ in names] == list(range(1, 37))
    for code, name in names:
        got = records.supply_kind(code)
        assert got == KIND_OF[name], "%s(%d): %s, not %s" % (name, code, got, KIND_OF[name])
    for code in (None, 0, 37, -1, "3"):
        assert records.supply_kind(code) == "other"


def test_mark_tech_value_by_value():
    names = enumeration(RFC3805_MARK_TECH)
    assert [c for c, _ in names] == list(range(1, 28))
    for code, name in names:
        got = features.mark_tech(code)
        assert got == tech_of(name), "%s(%d): %s, not %s" % (name, code, got, tech_of(name))
    for code in (None, 0, 28, -1):
        assert features.mark_tech(code) is None


def test_supply_rows_of_every_kind():
    rows = {}
    for code in range(1, 37):
        rows[code] = {5: code, 6: b"part", 8: 100, 9: 50}
    kinds = [s["kind"] for s in records.build_supplies(rows, {})]
    assert kinds.count("ribbon") == 2 and kinds.count("cleaner") == 2 and kinds.count("staples") == 2
    assert kinds[7 - 1] == "ribbon" and kinds[32 - 1] == "staples" and kinds[27 - 1] == "other"


def test_parts_named_only_in_the_description():
    # devices that type these other(1) / unknown(2) (recordings: Dell S5830dn, Samsung M4080FX, Xerox)
    def kind(desc, code=1):
        return records.build_supplies({1: {5: code, 6: desc}}, {})[0]["kind"]
    assert kind(b"Maintenance Kit") == "maintenance"
    assert kind(b"Fuser Maintenance Kit") == "maintenance"
    assert kind(b"Roller Kit") == "roller"
    assert kind(b"Tray 1 Retard Roller Life") == "roller"
    assert kind(b"ADF Roller", 2) == "roller"
    assert kind(b"Transfer Roller") == "transfer"
    assert kind(b"Transfer Belt Cleaner", None) == "cleaner"
    assert kind(b"Ink Ribbon") == "ribbon"
    assert kind(b"Waste Ink Pad") == "waste"
    assert kind(b"Ozone Filter") == "other"
    assert kind(b"Maintenance Kit", 15) == "fuser"      # a type code wins over the words


def test_alerts_name_their_supply_or_subunit():
    a = records.decode_alerts({
        1: {2: 3, 4: 11, 5: 2, 7: 1101, 8: b"Cyan toner empty"},      # markerSupplies row 2
        2: {2: 4, 4: 8, 5: 3, 7: 807, 8: b"Tray 3 low"},              # input row 3
        3: {2: 4, 4: 5, 5: -1, 7: 503},                               # generalPrinter: no row
        4: {2: 4, 4: 11, 5: 0, 7: 1104}})
    assert a[0]["supply"] == 2 and "subunit" not in a[0]
    assert a[1]["subunit"] == 3 and a[1]["group"] == "input" and "supply" not in a[1]
    assert "subunit" not in a[2] and "supply" not in a[2]
    assert "supply" not in a[3]
