"""The device's features in a full scan: technology, colour, duplex, installation date,
each from its best source with its provenance (docs/profiles.md "How the box uses a
profile"); pure, no I/O. Borrowed by the collector for the moment a full scan needs it
(fleetbox.collector._borrow), so a sweep's peak heap does not carry it.
"""
from fleetbox import oids, profiles, records
from fleetbox.assemble import CONSUMABLES
from fleetbox.profiles import search

# prtMarkerMarkTech (PrtMarkerMarkTechTC, RFC 3805) -> technology, indexed by the code;
# other(1) and unknown(2) say nothing, so the record looks further (technology()).
MARK_TECH = (None, None, None, "laser", "laser", "laser",                       # 3-5 electrophotographic
             "impact", "impact", "impact", "impact", "impact", "impact",       # 6-11 dot matrix .. impactOther
             "inkjet", "solid-ink", "inkjet", "other",                         # 12 aqueous, 13 solid, 14 other; 15 pen
             "thermal", "thermal", "thermal", "thermal",                       # 16-19
             "other", "other", "other", "other", "other", "other", "other", "other")   # 20-27


def mark_tech(code):
    if isinstance(code, int) and 0 < code < len(MARK_TECH):
        return MARK_TECH[code]
    return None


def model_rule(profile, model, feature):
    """(value, provenance) of the profile's first model rule naming `feature` ("technology",
    "duplex") whose pattern the model matches, else (None, None)."""
    if not model:
        return None, None
    n = 0
    for rule in (profile or {}).get("model_rules", ()):
        n += 1
        if feature in rule and search(rule["re"], model):
            return rule[feature], "profile %s: model rule %d" % (profile["vendor"], n)
    return None, None


def shape(profile, got, paths, supply_list, manufacturer, sources, model=None, counters=None):
    """(technology, colour, duplex), each from its best source (docs/collection.md "The
    device's shape"); None where no source says."""
    ncol = records.integer(got.get(oids.PRT_COLORANTS))
    colour = None
    if ncol is not None and ncol > 0:
        colour = ncol > 1
        sources["color"] = "prtMarkerProcessColorants"
    elif supply_list:
        colour = any(s["color"] not in (None, "black") or records.colour_words(s["description"])
                     for s in supply_list if s["kind"] in CONSUMABLES)
        sources["color"] = "supplies"
    tech = technology(profile, got, supply_list, model, manufacturer, sources)
    return tech, colour, duplex(profile, paths, counters, model, sources)


# prtMarkerSuppliesType codes that only one marking technology consumes (RFC 3805):
# toner, tonerCartridge, matteToner; ink, inkCartridge, matteInk; solidWax; ribbonWax.
# inkRibbon (7) is left out: impact and thermal-transfer printers both take one.
TECH_OF_SUPPLY = ((3, "laser"), (21, "laser"), (35, "laser"), (5, "inkjet"), (6, "inkjet"),
                  (36, "inkjet"), (12, "solid-ink"), (13, "thermal"))


def supplies_technology(supply_list):
    """(technology, provenance) the supplies prove: their type codes, else (type other or
    unknown) the words toner / ink in their descriptions; None when they disagree or say nothing."""
    found, src = None, None
    for s in supply_list or ():
        code = s.get("type_code")
        t, why = None, None
        for c, tech in TECH_OF_SUPPLY:
            if code == c:
                t, why = tech, "prtMarkerSuppliesType"
        if t is None and code in (None, 1, 2) and s.get("description"):
            words = s["description"].lower().replace(",", " ").replace("(", " ").split()
            if "toner" in words:
                t, why = "laser", "prtMarkerSuppliesDescription"
            elif "ink" in words:
                t, why = "inkjet", "prtMarkerSuppliesDescription"
        if t is None:
            continue
        if found is not None and t != found:
            return None, None
        if found is None or why == "prtMarkerSuppliesType":
            src = why
        found = t
    return found, src


def technology(profile, got, supply_list, model, manufacturer, sources):
    """prtMarkerMarkTech, else the supplies' types, else the profile's model rules, else
    the profile's technology for every model of the vendor (Zebra)."""
    tech = mark_tech(records.integer(got.get(oids.PRT_MARK_TECH)))
    src = "prtMarkerMarkTech"
    if not tech:
        tech, src = supplies_technology(supply_list)
        if src:
            src = "supplies (%s)" % src
    if not tech:
        tech, src = model_rule(profile, model, "technology")
    if not tech and (profile or {}).get("technology"):
        tech, src = profile["technology"], "profile %s" % manufacturer
    if tech:
        sources["technology"] = src
    return tech


def duplex(profile, paths, counters, model, sources, hr_texts=None):
    """True/False/None: a duplex media path; else a duplex counter above zero (a device that
    has printed both sides can: this overrules a media path table without one); else the
    profile's words in hrDeviceDescr (`hr_texts`); else the profile's model rules."""
    d, src = None, None
    if paths:
        d = any(records.integer(r.get(9)) in records.DUPLEX_PATHS for r in paths.values())
        src = "prtMediaPathType"
    if not d:
        n = (counters or {}).get("duplex")
        if isinstance(n, int) and n > 0:
            d, src = True, "counters.duplex > 0"
    if d is None and hr_texts:
        for i, t in hr_texts:
            if duplex_words(profile, t):
                d, src = True, "hrDeviceDescr.%d" % i
                break
    if d is None:
        d, src = model_rule(profile, model, "duplex")
    if src:
        sources["duplex"] = src
    return d


def duplex_words(profile, text):
    """Whether a device description holds one of the profile's words for a duplex printer."""
    if text:
        for w in (profile or {}).get("duplex_words", ()):
            if w in text:
                return True
    return False


def install_date(profile, ctx, sources):
    """The installation date a vendor exposes (the profile's install_date rules), as an
    ISO date; None where the device keeps none (first_seen is the box's own, separate)."""
    for rule in (profile or {}).get("install_date", ()):
        raw = ctx["get"].get(rule["oid"]) if "oid" in rule else profiles.extract_text(rule, ctx)
        if "oid" in rule and not isinstance(raw, (bytes, bytearray)):
            raw = profiles.extract_text(rule, ctx)
        date = iso_date(raw)
        if date:
            sources["install_date"] = profiles.provenance(rule, profile)
            return date
    return None


def iso_date(value):
    """"YYYY-MM-DD" from a device's date: SNMPv2-TC DateAndTime octets (year in two octets),
    or text that starts with an ISO date ("2019-04-17", "2019-04-17T08:00"); else None."""
    if isinstance(value, (bytes, bytearray)) and len(value) in (8, 11):
        y, mo, d = (value[0] << 8) | value[1], value[2], value[3]
    else:
        s = records.text(value)
        if not s or len(s) < 10 or s[4] != "-" or s[7] != "-" or not (s[:4] + s[5:7] + s[8:10]).isdigit():
            return None
        y, mo, d = int(s[:4]), int(s[5:7]), int(s[8:10])
    if 1990 <= y <= 2099 and 1 <= mo <= 12 and 1 <= d <= 31:
        return "%04d-%02d-%02d" % (y, mo, d)
    return None
