"""Every real printer recording (../shared/printer-walks) replayed by snmpsim and collected.

Expected values come from the recording itself (a tolerant .snmprec reader below, not
the collector's code): serial, model, total counter, every supply row, MAC, errors,
console and alerts, field by field. The non-printer recordings must come out as "not a
printer". The stubs (sysDescr/sysObjectID only) check vendor and model detection.
The recordings are served on 127.44.9.0/24, port 17473, by ONE snmpsim (simulator.site).
"""
import asyncio
import glob
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "host-tools"))

from simulator.site import Site, readdress_snmprec, walks_dir  # noqa: E402
from fleetbox import assemble, collector, devstate, profiles, snmp  # noqa: E402
from fleetbox.sweep import SweepOptions, sweep  # noqa: E402
from fbtool import profiles as compiler  # noqa: E402
from tests.interop.vendor_rows import BROTHER_BLOB, RICOH_ROWS, RICOH_TABLE, with_vendor_rows  # noqa: E402

PORT = 17473
NET = "127.44.9."
WALKS = walks_dir()
RECORDINGS = sorted(glob.glob(str(WALKS / "recordings" / "*.snmprec")))
NEGATIVE = sorted(glob.glob(str(WALKS / "negative" / "*.snmprec")))
STUBS = sorted(glob.glob(str(WALKS / "stubs" / "*.snmprec")))

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
PRT_SERIAL = "1.3.6.1.2.1.43.5.1.1.17.1"
LIFE = "1.3.6.1.2.1.43.10.2.1.4.1.1"
HR = "hr"   # model from the printer's hrDeviceDescr

# What the spec reads where the Printer-MIB has nothing, per recording: the OID (in the
# recording) that holds the truth. Models are given as the clean name, which must be a
# part of the text at `model_from` (so it is the device's own word, cleaned).
TRUTH = {
    "brother": dict(technology="laser", duplex=True, manufacturer="Brother", model="MFC-L2710DW", typology="mfp",
                    model_from="1.3.6.1.4.1.2435.2.4.3.2435.5.13.3.0",
                    serial_from="1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.1.0"),
    "canonprinter_lbp": dict(technology="laser", duplex=None,
                             manufacturer="Canon", model="LBP6670", model_from="1.3.6.1.4.1.1602.1.1.1.1.0",
                             firmware_from="1.3.6.1.4.1.1602.1.1.1.4.0"),
    "dell-laser_s5830dn": dict(technology="laser", duplex=True,
                               manufacturer="Dell", model="S5830dn", model_from=SYS_DESCR),
    "epson": dict(technology="inkjet", duplex=None,
                  manufacturer="Epson", model="WF-C5790BA", model_from=HR, typology="mfp"),
    "fujifilmprinter_c7580": dict(technology="laser", duplex=None,
                                  manufacturer="Fujifilm", model="Apeos C7580", model_from=SYS_DESCR),
    "jetdirect": dict(technology="laser", duplex=None,
                      manufacturer="HP", model="Color LaserJet M452nw", model_from=HR,
                      serial_in_sysdescr="SN:"),
    "jetdirect_m252dw": dict(technology="laser", duplex=True,
                             manufacturer="HP", model="Color LaserJet Pro M252dw", model_from=HR,
                             serial_in_sysdescr="SN:"),
    "konica": dict(technology="laser", duplex=None,
                   manufacturer="Konica Minolta", model="bizhub C3110", model_from=SYS_DESCR,
                   brand="Develop", brand_from="1.3.6.1.4.1.18334.1.1.1.1.6.2.1.0", typology="mfp"),
    "konica_2": dict(technology="laser", duplex=None,
                     manufacturer="Konica Minolta", model="bizhub 25e", model_from=SYS_DESCR),
    "okilan_9450g": dict(technology="laser", duplex=None, firmware="07.87", firmware_in=SYS_DESCR,
                         manufacturer="OKI", model="MC873", model_from="1.3.6.1.4.1.11.2.3.9.1.1.7.0"),
    "printmaster_brother": dict(manufacturer="Brother", model="HL-L8260CDW", model_from=HR,
                                technology="laser", color=True, duplex=True),
    "printmaster_epson_cw": dict(manufacturer="Epson", model="CW-C6500Au", model_from=HR,
                                 technology="inkjet", color=True, duplex=True,
                                 firmware_from="1.3.6.1.4.1.1248.1.1.3.1.21.1.1.2.4"),
    "printmaster_kyocera_cs4053": dict(
        manufacturer="Kyocera", model="CS 4053ci", model_from="1.3.6.1.4.1.1347.43.5.1.1.1.1",
        technology="laser", color=True, duplex=True, typology="mfp",
        counters={"print": "1.3.6.1.4.1.1347.42.3.1.1.1.1.1", "copy": "1.3.6.1.4.1.1347.42.3.1.1.1.1.2",
                  "fax": "1.3.6.1.4.1.1347.42.3.1.1.1.1.4", "duplex": "1.3.6.1.4.1.1347.42.2.5.1.1.2.1",
                  "scan": "1.3.6.1.4.1.1347.46.10.1.1.5.3",
                  "print_mono": "1.3.6.1.4.1.1347.42.3.1.2.1.1.1.1", "print_color": "1.3.6.1.4.1.1347.42.3.1.2.1.1.1.3",
                  "copy_mono": "1.3.6.1.4.1.1347.42.3.1.2.1.1.2.1", "copy_color": "1.3.6.1.4.1.1347.42.3.1.2.1.1.2.3"}),
    "ricoh_mpc3002": dict(technology="laser", duplex=None, manufacturer="Ricoh", model="Aficio MP C3002",
                          model_from="1.3.6.1.4.1.367.3.2.1.1.1.1.0", typology="mfp"),
    "samsungprinter_m4080fx": dict(technology="laser", duplex=True, firmware="V11.01.03.04", firmware_in=SYS_DESCR,
                                   manufacturer="Samsung", model="M4080FX", model_from=SYS_DESCR,
                                   typology="mfp"),
    "sharp": dict(technology="laser", duplex=True,
                  manufacturer="Sharp", model="MX-3570N", model_from=HR, typology="mfp",
                  counters={"mono": "1.3.6.1.4.1.2385.1.1.19.2.1.3.5.4.61",
                            "color": "1.3.6.1.4.1.2385.1.1.19.2.1.3.5.4.63",
                            "print": "1.3.6.1.4.1.2385.1.1.19.2.1.3.1.4.60",
                            "copy": "1.3.6.1.4.1.2385.1.1.19.2.1.3.4.4.60",
                            "duplex": "1.3.6.1.4.1.2385.1.1.19.2.1.3.1.4.75",
                            "print_mono": "1.3.6.1.4.1.2385.1.1.19.2.1.3.1.4.61",
                            "print_color": "1.3.6.1.4.1.2385.1.1.19.2.1.3.1.4.63",
                            "copy_mono": "1.3.6.1.4.1.2385.1.1.19.2.1.3.4.4.61",
                            "copy_color": "1.3.6.1.4.1.2385.1.1.19.2.1.3.4.4.63",
                            "scan_mono": "1.3.6.1.4.1.2385.1.1.19.2.1.3.7.4.51",
                            "scan_color": "1.3.6.1.4.1.2385.1.1.19.2.1.3.7.4.53"}),
    "utax": dict(technology="laser", duplex=True,
                 manufacturer="Kyocera", model="P-4532DN", model_from="1.3.6.1.4.1.1347.43.5.1.1.1.1",
                 serial_from="1.3.6.1.4.1.1347.43.5.1.1.28.1", brand="UTAX", brand_from=SYS_DESCR),
    "xerox": dict(technology="laser", duplex=None, firmware="100.002.057.09608", firmware_in=SYS_DESCR,
                  manufacturer="Xerox", model="AltaLink C8045", model_from=SYS_DESCR),
    "zebra": dict(duplex=False, manufacturer="Zebra", model="TLP 2824 Plus", model_from="1.3.6.1.4.1.10642.1.1.0",
                  serial_from="1.3.6.1.4.1.10642.200.19.5.0", technology="thermal", typology="printer"),
}

# Stubs: (manufacturer, model, brand) from sysDescr / sysObjectID (and the few vendor OIDs a stub holds).
STUB_TRUTH = {
    "canonprinter_d1180": ("Canon", "D1180/MF6680", None),
    "canonprinter_mf": ("Canon", "MF", None),
    "dell-laser_color": ("Dell", "Color Laser", None),
    "dell-laser_mfp": ("Dell", "MFP Laser 3115cn", None),
    "developprinter": ("Konica Minolta", "ineo 280", "Develop"),
    "jetdirect_1": ("Kyocera", None, None),          # HP JetDirect name, Kyocera's enterprise number
    "jetdirect_2": ("HP", None, None),
    "kyocera": ("Kyocera", "FS-1028MFP", None),
    "lexmarkprinter": ("Lexmark", "T640", None),
    "nrg": ("Ricoh", "SP 4210N", "NRG"),
    "okilan": ("OKI", "MC342", None),
    "ricoh": ("Ricoh", "MP 3053", None),
    "ricoh_aficio": ("Ricoh", "Aficio MP 201", None),
    "samsungprinter_c": ("Samsung", "C", None),
    "samsungprinter_ml": ("Samsung", "ML-2850", None),
    "samsungprinter_s": ("Samsung", "S", None),
    "samsungprinter_scx": ("Samsung", "SCX", None),
    "sharp_mx2614n": ("Sharp", "MX-2614N", None),
    "sharp_mx3140n": ("Sharp", "MX-3140N", None),
    "sharp_mxc301w": ("Sharp", "MX-C301W", None),
    "toshiba-tec_estudio2505": ("Toshiba", "e-STUDIO2505AC", None),
    "toshiba-tec_ev4": ("Toshiba", "B-EV4", None),
    "toshiba-tec_fv4": ("Toshiba", "B-FV4", None),
    "toshiba-tec_sx5t": ("Toshiba", "B-SX5T", None),
    "tsc": (None, "TTP244CE", None),
    "xerox_apeosport": ("Fujifilm", "ApeosPort-VI C4471", None),
    "xerox_color": ("Xerox", "Color 570", None),
    "xerox_docuprint": ("Fujifilm", "DocuPrint CM305 df", None),
    "xerox_phaser": ("Xerox", "Phaser 4600", None),
    "zebra_1": ("Zebra", None, None),
}


# ------------------------------------------------------------------ the recording's own truth

def read_snmprec(path):
    """{oid: value} of a .snmprec file: ints, bytes for strings, dotted text for OIDs.
    Tolerant: a malformed line (one recording has '6git3159' as a Counter32) is skipped."""
    out = {}
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\r\n")
            parts = line.split("|", 2)
            if len(parts) != 3:
                continue
            oid, tag, val = parts
            oid = oid.lstrip(".")
            base = tag.split(":")[0]
            hexed = base.endswith("x")
            base = base.rstrip("x")
            try:
                if base in ("2", "65", "66", "67", "70"):
                    v = int(val)
                elif base == "4":
                    v = bytes.fromhex(val) if hexed else val.encode("utf-8", "surrogateescape")
                else:
                    v = val.lstrip(".")
            except ValueError:
                continue
            out[oid] = v
    return out


def txt(v):
    if v is None:
        return None
    if isinstance(v, bytes):
        for enc in ("utf-8", "latin-1"):
            try:
                v = v.decode(enc)
                break
            except UnicodeDecodeError:
                continue
    v = v.replace("\x00", "").strip()
    return v or None


def column(rec, prefix):
    """{index suffix: value} of one table column."""
    n = len(prefix) + 1
    return {o[n:]: v for o, v in rec.items() if o.startswith(prefix + ".")}


def printer_hr_index(rec):
    types = column(rec, "1.3.6.1.2.1.25.3.2.1.2")
    for idx in sorted(types, key=int):
        if types[idx] == "1.3.6.1.2.1.25.3.1.5":
            return idx
    if not types:
        # no hrDeviceType column at all (Samsung): the first device is the printer
        descr = column(rec, "1.3.6.1.2.1.25.3.2.1.3")
        return min(descr, key=int) if descr else None
    return None


def expected_supplies(rec):
    colorants = {int(k.split(".")[-1]): txt(v) for k, v in column(rec, "1.3.6.1.2.1.43.12.1.1.4").items()}
    cols = {c: column(rec, "1.3.6.1.2.1.43.11.1.1.%d" % c) for c in (3, 5, 6, 7, 8, 9)}
    idxs = sorted({k for c in cols.values() for k in c}, key=lambda k: int(k.split(".")[-1]))
    out = []
    for k in idxs:
        lv, mx = cols[9].get(k), cols[8].get(k)
        level = lv if isinstance(lv, int) and lv >= 0 else None
        maxc = mx if isinstance(mx, int) and mx > 0 else None
        pct = None
        if level is not None and maxc:
            pct = min(100, int(level * 100 / maxc + 0.5))
        state = {-1: "unrestricted", -2: "unknown", -3: "some-remaining"}.get(lv)
        if state is None:
            state = "unknown" if lv is None else "empty" if lv == 0 else \
                "low" if pct is not None and pct < 10 else "ok"
        out.append({"index": int(k.split(".")[-1]), "level": level, "max": maxc, "percent": pct,
                    "state": state, "type_code": cols[5].get(k),
                    "color": colorants.get(cols[3].get(k)) if cols[3].get(k) else None})
    return out


def expected_mac(rec):
    """The spec's MAC: the interface carrying the device's own address (the simulator
    serves each recording at its own address in place of the recorded one: the first
    ipAddrTable entry not 127.x or 0.0.0.0), else the first non-empty ifPhysAddress."""
    ifindex = column(rec, "1.3.6.1.2.1.4.20.1.2")
    for ip in sorted(ifindex, key=lambda a: [int(x) for x in a.split(".")]):
        if not ip.startswith("127.") and ip != "0.0.0.0":
            v = rec.get("1.3.6.1.2.1.2.2.1.6.%s" % ifindex[ip])
            if isinstance(v, bytes) and len(v) == 6 and any(v):
                return ":".join("%02x" % b for b in v)
            break
    for k in sorted(column(rec, "1.3.6.1.2.1.2.2.1.6"), key=int):
        v = rec["1.3.6.1.2.1.2.2.1.6." + k]
        if isinstance(v, bytes) and len(v) == 6 and any(v):
            return ":".join("%02x" % b for b in v)
    return None


ERRORS = ("lowPaper", "noPaper", "lowToner", "noToner", "doorOpen", "jammed", "offline",
          "serviceRequested", "inputTrayMissing", "outputTrayMissing", "markerSupplyMissing",
          "outputNearFull", "outputFull", "inputTrayEmpty", "overduePreventMaint")


def expected_errors(rec, idx):
    v = rec.get("1.3.6.1.2.1.25.3.5.1.2." + str(idx)) if idx else None
    if not isinstance(v, bytes):
        return []
    bits = int.from_bytes(v, "big")
    n = len(v) * 8
    return [name for i, name in enumerate(ERRORS) if i < n and bits & (1 << (n - 1 - i))]


# ------------------------------------------------------------------ fixtures

def name_of(path):
    return os.path.basename(path)[:-len(".snmprec")]


ADDRESSES = {name_of(p): NET + str(10 + i) for i, p in enumerate(RECORDINGS + NEGATIVE)}
DUPLICATE = NET + "200"    # the UTAX recording again: one device answering on two addresses


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("profiles") / "profiles.json")
    compiler.compile_to(path)
    return path


WITH_TABLES = {"ricoh_mpc3002": NET + "201", "brother": NET + "202"}


@pytest.fixture(scope="module")
def table_recordings(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    ricoh, brother = with_vendor_rows(WALKS, d / "ricoh_mpc3002.snmprec", d / "brother.snmprec")
    return {"ricoh_mpc3002": ricoh, "brother": brother}


@pytest.fixture(scope="module")
def site(table_recordings):
    devs = [{"name": name_of(p), "address": ADDRESSES[name_of(p)], "kind": "recording",
             "recording": p, "printer": p in RECORDINGS} for p in RECORDINGS + NEGATIVE]
    devs.append({"name": "utax-again", "address": DUPLICATE, "kind": "recording", "printer": True,
                 "recording": str(WALKS / "recordings" / "utax.snmprec")})
    for name, addr in WITH_TABLES.items():
        devs.append({"name": name + "-tables", "address": addr, "kind": "recording", "printer": True,
                     "recording": table_recordings[name]})
    s = Site.from_dict({"devices": devs}, port_override=PORT)
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def collected(site, compiled):
    """{name: record or None} from the firmware collector (CPython), one full scan each."""
    plist = profiles.load([compiled])

    async def run():
        client = snmp.Client(timeout_ms=1000, retries=1)   # generous: CI machines are busy
        col = collector.Collector(client, profile_list=plist, state=devstate.DeviceState())
        out = {}
        try:
            for name, addr in ADDRESSES.items():
                out[name] = await col.collect(addr, PORT, "full")
        finally:
            client.close()
        return out
    return asyncio.run(run())


def test_walks_present():
    assert len(RECORDINGS) >= 19 and len(NEGATIVE) >= 4 and len(STUBS) >= 30
    assert set(TRUTH) == {name_of(p) for p in RECORDINGS}, "every recording needs its TRUTH row"


@pytest.mark.parametrize("path", NEGATIVE, ids=[name_of(p) for p in NEGATIVE])
def test_non_printers_are_not_printers(collected, path):
    assert collected[name_of(path)] is None


@pytest.mark.parametrize("path", RECORDINGS, ids=[name_of(p) for p in RECORDINGS])
def test_recording_field_by_field(collected, path):
    name = name_of(path)
    rec = read_snmprec(path)
    t = TRUTH[name]
    r = collected[name]
    assert r is not None, "%s not recognised as a printer" % name
    assert r["ip"] == ADDRESSES[name] and r["port"] == PORT
    # identification
    assert r["manufacturer"] == t["manufacturer"]
    assert r["model"] == t["model"]
    src = txt(rec.get(t["model_from"])) if t["model_from"] != HR else \
        txt(rec.get("1.3.6.1.2.1.25.3.2.1.3." + (printer_hr_index(rec) or "1")))
    assert src and t["model"] in " ".join(src.split()), (t["model"], src)
    assert r["sources"]["model"]
    # provenance for every identification and feature value the record holds
    for k in ("serial", "mac", "model", "manufacturer", "typology", "color", "duplex", "technology"):
        if r.get(k) not in (None, "unknown"):
            assert r["sources"].get(k), (k, r[k])
    if txt(rec.get(PRT_SERIAL)):
        serial, source = txt(rec[PRT_SERIAL]), "prtGeneralSerialNumber"
    elif "serial_from" in t:
        serial, source = txt(rec[t["serial_from"]]), t["serial_from"]
    elif "serial_in_sysdescr" in t:
        d = txt(rec[SYS_DESCR])
        serial = d.split(t["serial_in_sysdescr"], 1)[1].split(",", 1)[0].strip()
        source = "sysDescr"
    else:
        serial = source = None
    assert r["serial"] == serial
    if serial:
        assert source in r["sources"]["serial"]
    if "firmware_from" in t:
        assert r["firmware"] == txt(rec[t["firmware_from"]])
    if "firmware_in" in t:   # a per-vendor pattern of the profile: the device's own text, cut out
        assert r["firmware"] == t["firmware"] and t["firmware"] in txt(rec[t["firmware_in"]])
        assert r["sources"]["firmware"].endswith("sysDescr")
    if "brand" in t:
        assert r["brand"] == t["brand"] and t["brand"] in txt(rec[t["brand_from"]])
    else:
        assert "brand" not in r
    assert r["hostname"] == txt(rec.get("1.3.6.1.2.1.1.5.0"))
    assert r["location"] == txt(rec.get("1.3.6.1.2.1.1.6.0"))
    assert r["sys_object_id"] == rec["1.3.6.1.2.1.1.2.0"]
    assert r["sys_descr"] == txt(rec[SYS_DESCR])
    up = rec.get("1.3.6.1.2.1.1.3.0")
    assert r["uptime_s"] == (up // 100 if up is not None else None)
    assert r["mac"] == expected_mac(rec)
    # counters: the life count exactly, else nothing invented
    if LIFE in rec:
        assert r["counters"]["total"] == rec[LIFE]
        assert r["sources"]["counters.total"] == "prtMarkerLifeCount"
    else:
        assert "total" not in r["counters"]
    for key, oid in (t.get("counters") or {}).items():
        assert r["counters"][key] == rec[oid], key
        assert oid in r["sources"]["counters." + key]
    for v in r["counters"].values():
        assert isinstance(v, dict) or (isinstance(v, int) and v >= 0)
    # supplies: every row, as the device reports it
    want = expected_supplies(rec)
    assert [s["index"] for s in r["supplies"]] == [s["index"] for s in want]
    for got, exp in zip(r["supplies"], want):
        for k in ("level", "max", "percent", "state", "type_code", "color"):
            assert got[k] == exp[k], (got["index"], k, got[k], exp[k])
        raw = rec.get("1.3.6.1.2.1.43.11.1.1.6.1.%d" % got["index"])
        assert got["description"] == txt(raw)
        assert got["kind"] in ("toner", "ink", "ribbon", "drum", "developer", "fuser", "transfer",
                               "cleaner", "waste", "staples", "maintenance", "roller", "other")
    # features and status: each known one with its provenance, never a guess
    for k in ("technology", "color", "duplex", "typology"):
        if k in t:
            assert r[k] == t[k], k
            assert (r[k] is None) == (k not in r["sources"]), (k, r["sources"].get(k))
    assert r["install_date"] is None and "install_date" not in r["sources"]   # no recording keeps one
    assert isinstance(r["first_seen"], int) and r["first_seen"] <= r["collected_at"]
    idx = printer_hr_index(rec)
    assert r["status"]["errors"] == expected_errors(rec, idx)
    display = [txt(v) for k, v in sorted(column(rec, "1.3.6.1.2.1.43.16.5.1.2").items()) if txt(v)]
    assert r["status"]["display"] == display
    alerts = column(rec, "1.3.6.1.2.1.43.18.1.1.7")
    assert len(r["status"]["alerts"]) == len(alerts)
    assert r["scan"] == "full" and r["snmp_version"] == "2c"


def test_printmaster_alerts_and_console_decoded(collected):
    ky = collected["printmaster_kyocera_cs4053"]
    assert ky["status"]["display"] == ["Preparing to print..."]
    assert {"severity": "warning", "group": "generalPrinter", "code": "poweredUp",
            "description": None, "subunit": 1} in ky["status"]["alerts"]
    fuser = [a for a in ky["status"]["alerts"] if a["code"] == "markerFuserUnderTemperature"]
    assert fuser and fuser[0]["group"] == "marker" and fuser[0]["subunit"] == 1   # marker 1
    ep = collected["printmaster_epson_cw"]
    low = [a for a in ep["status"]["alerts"] if a["code"] == "markerInkAlmostEmpty"]
    assert low and all(a["description"] == "Ink is low." for a in low)
    # each names its supply (prtAlertGroupIndex), one of the record's ink rows
    kinds = {s["index"]: s["kind"] for s in ep["supplies"]}
    assert sorted(kinds[a["supply"]] for a in low) == ["ink"] * len(low)
    assert len(set(a["supply"] for a in low)) == len(low)
    br = collected["printmaster_brother"]
    assert br["status"]["display"] == ["Sleep"] and br["status"]["power"] == "sleep"


def test_by_function_counters_agree_with_total(collected):
    for name in ("printmaster_kyocera_cs4053", "sharp"):
        r = collected[name]
        assert "counter_flags" not in r, (name, r.get("counter_flags"))
        assert r["counters"]["mono"] + r["counters"]["color"] <= r["counters"]["total"]


def test_vendor_counter_table_and_blob_fill_what_standard_mibs_left(site, compiled, table_recordings):
    async def run():
        client = snmp.Client(timeout_ms=1000, retries=1)
        col = collector.Collector(client, profile_list=profiles.load([compiled]))
        try:
            return {n: await col.collect(a, PORT, "counters") for n, a in WITH_TABLES.items()}
        finally:
            client.close()
    got = asyncio.run(run())
    # Ricoh: sums over the type ranges of the recording's table (docs/profiles.md)
    rec = read_snmprec(table_recordings["ricoh_mpc3002"])
    types = column(rec, RICOH_TABLE + ".2")
    values = column(rec, RICOH_TABLE + ".9")
    assert len(types) == len(RICOH_ROWS)

    def total(lo, hi):
        return sum(values[i] for i, t in types.items() if lo <= t <= hi)
    r = got["ricoh_mpc3002"]
    plain = read_snmprec(WALKS / "recordings" / "ricoh_mpc3002.snmprec")
    if LIFE in plain:
        assert r["counters"]["total"] == plain[LIFE] and r["sources"]["counters.total"] == "prtMarkerLifeCount"
    else:
        assert r["counters"]["total"] == total(10, 10) == 81234
        assert r["sources"]["counters.total"] == "table %s type 10" % RICOH_TABLE
    want = {"copy": (total(200, 203), "200-203"), "fax": (total(300, 300), "300"),
            "print": (total(400, 403), "400-403"), "scan": (total(870, 871), "870+871")}
    assert {k: v[0] for k, v in want.items()} == {"copy": 1023, "fax": 17, "print": 50123, "scan": 911}
    for k, (v, codes) in want.items():
        assert r["counters"][k] == v, k
        assert r["sources"]["counters." + k] == "table %s type %s" % (RICOH_TABLE, codes)
    # Brother: the blob's ids; the total stays the Printer-MIB's when the device has one
    rec = read_snmprec(table_recordings["brother"])
    blob = rec[BROTHER_BLOB]
    ids = {blob[i]: int.from_bytes(blob[i + 2:i + 6], "big") for i in range(0, len(blob) - 1, 6)}
    b = got["brother"]
    if LIFE in rec:
        assert b["counters"]["total"] == rec[LIFE] and b["sources"]["counters.total"] == "prtMarkerLifeCount"
    else:
        assert b["counters"]["total"] == ids[0] and b["sources"]["counters.total"] == "blob %s id 0x00" % BROTHER_BLOB
    assert (b["counters"]["mono"], b["counters"]["color"]) == (ids[1], ids[2]) == (8001, 0)
    assert b["sources"]["counters.mono"] == "blob %s id 0x01" % BROTHER_BLOB
    assert b["sources"]["counters.color"] == "blob %s id 0x02" % BROTHER_BLOB


def test_scan_kinds_read_only_their_part(site, compiled):
    plist = profiles.load([compiled])

    async def run():
        client = snmp.Client(timeout_ms=1000, retries=1)   # generous: CI machines are busy
        col = collector.Collector(client, profile_list=plist)
        addr = ADDRESSES["printmaster_kyocera_cs4053"]
        out = {}
        try:
            for kind in collector.KINDS:
                out[kind] = await col.collect(addr, PORT, kind)
        finally:
            client.close()
        return out
    got = asyncio.run(run())
    for kind, r in got.items():
        assert r["scan"] == kind and r["serial"] == "RH28Y00024" and r["model"] == "CS 4053ci"
    assert "counters" not in got["discovery"] and "supplies" not in got["discovery"]
    assert got["counters"]["counters"]["total"] == 76498 and "supplies" not in got["counters"]
    assert len(got["supplies"]["supplies"]) == 5 and "status" not in got["supplies"]
    assert [s["kind"] for s in got["parts"]["supplies"]] == ["waste"]
    assert got["alerts"]["status"]["alerts"] and "counters" not in got["alerts"]


def test_fbtool_scan_on_micropython_matches(site, collected):
    """The same collector on MicroPython, through `fbtool scan --json`, sweeping the block."""
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "fbtool"), "scan", NET + "0/24",
                        "--port", str(PORT), "--timeout-ms", "1000", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    by_ip = {x["ip"]: x for x in got}
    printers = {n: a for n, a in ADDRESSES.items() if collected[n] is not None}
    # the UTAX answering on two addresses is reported once, at either of them
    utax = [ip for ip in by_ip if ip in (ADDRESSES["utax"], DUPLICATE)]
    assert len(utax) == 1 and len(got) == len(printers)
    if utax[0] == DUPLICATE:
        by_ip[ADDRESSES["utax"]] = dict(by_ip.pop(DUPLICATE), ip=ADDRESSES["utax"])
    assert set(by_ip) == set(printers.values())
    for name, addr in printers.items():
        a, b = dict(collected[name]), dict(by_ip[addr])
        for x in (a, b):
            x.pop("collected_at")
            x.pop("first_seen", None)     # the clock of each run
        assert a == b, name


@pytest.mark.parametrize("path", STUBS, ids=[name_of(p) for p in STUBS])
def test_stub_vendor_and_model(compiled, path):
    rec = read_snmprec(path)
    plist = profiles.load([compiled])
    descr = txt(rec.get(SYS_DESCR))
    oid = rec.get("1.3.6.1.2.1.1.2.0")
    p = profiles.match(plist, oid, descr)
    ctx = {"get": rec, "hr": None, "sysdescr": descr}
    model, _ = assemble.derive_model(p, ctx)
    brand, _ = profiles.first_text(p, "brand", ctx)
    man = p["vendor"] if p else None
    if brand and man and brand.lower() == man.lower():
        brand = None
    assert (man, model, brand) == STUB_TRUTH[name_of(path)]


def test_capture_writes_a_replayable_snmprec(site, tmp_path):
    """`fbtool scan --capture`: the raw walk of one device, every object as recorded."""
    out = tmp_path / "canon.snmprec"
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "fbtool"), "scan",
                        "%s:%d" % (ADDRESSES["canonprinter_lbp"], PORT), "--capture", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    served = tmp_path / "served.snmprec"     # the recording as served at the device's address
    served.write_text(readdress_snmprec((WALKS / "recordings" / "canonprinter_lbp.snmprec").read_text(),
                                        ADDRESSES["canonprinter_lbp"]))
    got, want = read_snmprec(str(out)), read_snmprec(str(served))
    assert got == want
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "fbtool"), "scan", NET + "0/24",
                        "--capture", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "exactly one device" in r.stderr


def test_counter_going_backwards_is_flagged(site, compiled, tmp_path):
    """The box remembers the last counters per serial: a total lower than last time is flagged."""
    path = str(tmp_path / "devices.json")
    st = devstate.DeviceState(path)
    st.keep_counters("RH28Y00024", {"total": 80000, "print": 41000}, 1)
    st.save()

    async def run():
        client = snmp.Client(timeout_ms=1000, retries=1)   # generous: CI machines are busy
        col = collector.Collector(client, profile_list=profiles.load([compiled]), state=devstate.DeviceState(path))
        try:
            first = await col.collect(ADDRESSES["printmaster_kyocera_cs4053"], PORT, "counters")
            again = await col.collect(ADDRESSES["printmaster_kyocera_cs4053"], PORT, "counters")
        finally:
            client.close()
        return first, again
    first, again = asyncio.run(run())
    assert first["counter_flags"] == ["backwards:total", "backwards:print"]
    assert "counter_flags" not in again          # now compared with the reading just taken


def test_credential_list_tried_in_order_and_remembered(site, compiled):
    """Communities are tried in order; the one that answered is tried first next time."""
    creds = [snmp.Credential("2c", b"not-this-one"), snmp.Credential("2c", b"public")]
    state = devstate.DeviceState()
    targets = [(NET + str(i), PORT) for i in (10, 11, 12)]

    async def run():
        client = snmp.Client(timeout_ms=1500, retries=0)
        out = []
        try:
            for _ in range(2):
                found, stats = [], {}
                await sweep(client, iter(targets), found.append, SweepOptions(
                    scan="discovery", creds=creds, profiles=profiles.load([compiled]), state=state, stats=stats))
                out.append((sorted(r["ip"] for r in found), stats["sent"]))
        finally:
            client.close()
        return out
    (first_ips, first_sent), (again_ips, again_sent) = asyncio.run(run())
    assert first_ips == again_ips == [a for a, _ in targets]
    assert first_sent == 6 and again_sent == 3          # wrong community first, then remembered
    assert all(state.preferred_credential(a) == 1 for a, _ in targets)


def test_static_columns_cached_on_flash_give_the_same_supplies(site, compiled, tmp_path):
    """With the supplies' static columns cached per device, the next scan reads only the
    levels: same supplies, fewer bytes; a cache that no longer fits is read again."""
    statics = devstate.Statics(str(tmp_path / "statics"))
    names = ("sharp", "printmaster_kyocera_cs4053", "xerox", "printmaster_epson_cw")

    async def run():
        client = snmp.Client(timeout_ms=1000, retries=1)
        col = collector.Collector(client, profile_list=profiles.load([compiled]), statics=statics)
        out = []
        try:
            for _ in range(2):
                before = client.stats["bytes_in"] + client.stats["bytes_out"]
                recs = [await col.collect(ADDRESSES[n], PORT, "full") for n in names]
                # bytes compare only without retransmissions (a busy machine may cause some)
                used = client.stats["bytes_in"] + client.stats["bytes_out"] - before
                out.append((recs, used if not client.stats["retries"] else None))
        finally:
            client.close()
        return out
    (first, b1), (again, b2) = asyncio.run(run())
    for a, b in zip(first, again):
        assert a["supplies"] == b["supplies"]
    if b1 is not None and b2 is not None:
        assert b2 < b1 * 0.8, (b1, b2)
    # a cache whose rows do not match the device is not used
    path = statics._path(ADDRESSES["xerox"], PORT)
    with open(path) as f:
        d = json.load(f)
    d["rows"]["1"][5] = 0                        # "the level was 0": now higher, a new cartridge
    d["rows"]["1"][1] = "stale description"
    with open(path, "w") as f:
        json.dump(d, f)
    (third, _), _ = asyncio.run(run())
    assert third[2]["supplies"] == first[2]["supplies"]
