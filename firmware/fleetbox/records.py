"""Pure decoding for device records: SNMP values in, record fields out (no I/O).

Everything here is a function of values already read, so the same code runs on the
box, on the host and in tests. Field meanings: shared/spec/device-record.md.
"""
import binascii

from fleetbox import ber

# prtMarkerSuppliesType (PrtMarkerSuppliesTypeTC, RFC 3805) -> kind, indexed by the code:
# tuples cost the box a fraction of a dict's heap. Codes 35, 36 (matteToner, matteInk)
# were added to IANA-PRINTER-MIB after the RFC.
SUPPLY_KINDS = (None, "other", "other", "toner", "waste", "ink", "ink",          # 0-6
                "ribbon", "waste", "drum", "developer", "fuser", "ink",           # 7 inkRibbon .. 12 solidWax
                "ribbon", "waste", "fuser", "other", "fuser", "cleaner",         # 13 ribbonWax .. 18 cleanerUnit
                "cleaner", "transfer", "toner", "fuser", "other", "waste",       # 19 fuserCleaningPad .. 24 wasteWater
                "other", "waste", "other", "other", "staples", "other",          # 25 glueWaterAdditive .. 30 shrinkWrap
                "other", "staples", "other", "other", "toner", "ink")            # 31 paperWrap .. 36 matteInk


def supply_kind(code):
    if isinstance(code, int) and 0 < code < len(SUPPLY_KINDS):
        return SUPPLY_KINDS[code]
    return "other"


SUPPLY_UNITS = {1: "other", 2: "unknown", 3: "tenThousandthsOfInches", 4: "micrometers",
                7: "impressions", 8: "sheets", 11: "hours", 12: "thousandthsOfOunces",
                13: "tenthsOfGrams", 14: "hundrethsOfFluidOunces", 15: "tenthsOfMilliliters",
                16: "feet", 17: "meters", 18: "items", 19: "percent"}
DEVICE_STATUS = {1: "unknown", 2: "running", 3: "warning", 4: "testing", 5: "down"}
PRINTER_STATUS = {1: "other", 2: "unknown", 3: "idle", 4: "printing", 5: "warmup"}
ERROR_BITS = ("lowPaper", "noPaper", "lowToner", "noToner", "doorOpen", "jammed", "offline",
              "serviceRequested", "inputTrayMissing", "outputTrayMissing", "markerSupplyMissing",
              "outputNearFull", "outputFull", "inputTrayEmpty", "overduePreventMaint")
DUPLEX_PATHS = (4, 5)   # prtMediaPathType longEdgeBindingDuplex, shortEdgeBindingDuplex
ALERT_SEVERITY = {1: "other", 3: "critical", 4: "warning", 5: "warningBinaryChangeEvent"}
ALERT_GROUP = {1: "other", 3: "hostResourcesMIBStorageTable", 4: "hostResourcesMIBDeviceTable",
               5: "generalPrinter", 6: "cover", 7: "localization", 8: "input", 9: "output",
               10: "marker", 11: "markerSupplies", 12: "markerColorant", 13: "mediaPath",
               14: "channel", 15: "interpreter", 16: "consoleDisplayBuffer", 17: "consoleLights",
               18: "alert", 30: "finDevice", 31: "finSupply", 32: "finSupplyMediaInput",
               33: "finAttribute"}
ALERT_GROUP_SUPPLIES = 11   # markerSupplies: prtAlertGroupIndex is a prtMarkerSuppliesIndex
# PrtAlertCodeTC (RFC 3805) names, as one string (",CODE:name,"): a dict of 110 entries
# would cost the box ~15 KB of heap for a rarely used lookup.
ALERT_CODES = (","
               "1:other,2:unknown,3:coverOpen,4:coverClosed,5:interlockOpen,6:interlockClosed,"
               "7:configurationChange,8:jam,9:subunitMissing,10:subunitLifeAlmostOver,11:subunitLifeOver,"
               "12:subunitAlmostEmpty,13:subunitEmpty,14:subunitAlmostFull,15:subunitFull,"
               "16:subunitNearLimit,17:subunitAtLimit,18:subunitOpened,19:subunitClosed,20:subunitTurnedOn,"
               "21:subunitTurnedOff,22:subunitOffline,23:subunitPowerSaver,24:subunitWarmingUp,"
               "25:subunitAdded,26:subunitRemoved,27:subunitResourceAdded,28:subunitResourceRemoved,"
               "29:subunitRecoverableFailure,30:subunitUnrecoverableFailure,"
               "31:subunitRecoverableStorageError,32:subunitUnrecoverableStorageError,"
               "33:subunitMotorFailure,34:subunitMemoryExhausted,35:subunitUnderTemperature,"
               "36:subunitOverTemperature,37:subunitTimingFailure,38:subunitThermistorFailure,501:doorOpen,"
               "502:doorClosed,503:poweredUp,504:poweredDown,505:printerNMSReset,506:printerManualReset,"
               "507:printerReadyToPrint,801:inputMediaTrayMissing,802:inputMediaSizeChange,"
               "803:inputMediaWeightChange,804:inputMediaTypeChange,805:inputMediaColorChange,"
               "806:inputMediaFormPartsChange,807:inputMediaSupplyLow,808:inputMediaSupplyEmpty,"
               "809:inputMediaChangeRequest,810:inputManualInputRequest,811:inputTrayPositionFailure,"
               "812:inputTrayElevationFailure,813:inputCannotFeedSizeSelected,901:outputMediaTrayMissing,"
               "902:outputMediaTrayAlmostFull,903:outputMediaTrayFull,904:outputMailboxSelectFailure,"
               "1001:markerFuserUnderTemperature,1002:markerFuserOverTemperature,"
               "1003:markerFuserTimingFailure,1004:markerFuserThermistorFailure,"
               "1005:markerAdjustingPrintQuality,1101:markerTonerEmpty,1102:markerInkEmpty,"
               "1103:markerPrintRibbonEmpty,1104:markerTonerAlmostEmpty,1105:markerInkAlmostEmpty,"
               "1106:markerPrintRibbonAlmostEmpty,1107:markerWasteTonerReceptacleAlmostFull,"
               "1108:markerWasteInkReceptacleAlmostFull,1109:markerWasteTonerReceptacleFull,"
               "1110:markerWasteInkReceptacleFull,1111:markerOpcLifeAlmostOver,1112:markerOpcLifeOver,"
               "1113:markerDeveloperAlmostEmpty,1114:markerDeveloperEmpty,1115:markerTonerCartridgeMissing,"
               "1301:mediaPathMediaTrayMissing,1302:mediaPathMediaTrayAlmostFull,"
               "1303:mediaPathMediaTrayFull,1304:mediaPathCannotDuplexMediaSelected,"
               "1501:interpreterMemoryIncrease,1502:interpreterMemoryDecrease,"
               "1503:interpreterCartridgeAdded,1504:interpreterCartridgeDeleted,"
               "1505:interpreterResourceAdded,1506:interpreterResourceDeleted,"
               "1507:interpreterResourceUnavailable,1509:interpreterComplexPageEncountered,"
               "1801:alertRemovalOfBinaryChangeEntry"
               ",")


def alert_code_name(code):
    """The RFC 3805 name of a prtAlertCode, else the number itself."""
    if code is None:
        return "unknown"
    i = ALERT_CODES.find(",%d:" % code)
    if i < 0:
        return code
    i = ALERT_CODES.index(":", i) + 1
    return ALERT_CODES[i:ALERT_CODES.index(",", i)]


MFP_WORDS = ("scan", "fax", "copier", "copy", "multi-function", "multifunction", "mfp", "facsimile")
LOW_PERCENT = 10
_HEX = "0123456789abcdefABCDEF"


def text(value, unhex=False):
    """Device text to str, or None when empty / not text.

    UTF-16 (with a BOM, or without one when every other octet is NUL), else UTF-8, else
    Latin-1; NULs and surrounding blanks trimmed. With `unhex`, a value made only of hex
    digits that decodes to printable text is taken as that text (devices that send
    descriptions as hex strings).
    """
    if value is None or ber.is_exception(value) or isinstance(value, (int, tuple)):
        return None
    if isinstance(value, str):
        s = value
    else:
        b = bytes(value)
        if b[:2] in (b"\xff\xfe", b"\xfe\xff"):
            s = _utf16(b[2:], b[0] == 0xFF)
        elif _nul_pattern(b, 1):
            s = _utf16(b, True)
        elif _nul_pattern(b, 0):
            s = _utf16(b, False)
        else:
            s = _decode8(b)
    s = s.replace("\x00", "").strip()
    if unhex and s:
        h = _from_hex(s)
        if h is not None:
            s = h
    return s or None


def _nul_pattern(b, odd):
    """UTF-16 without a BOM: even length >= 4 and NUL at every `odd` position, text at the others."""
    n = len(b)
    if n < 4 or n % 2:
        return False
    for i in range(n):
        if (i % 2 == odd) != (b[i] == 0):
            return False
    return True


def _decode8(b):
    try:
        return b.decode("utf-8")
    except UnicodeError:
        # Latin-1: every octet is its own code point.
        return "".join(chr(c) for c in b)


def _utf16(b, little):
    # By hand: MicroPython's bytes.decode knows only UTF-8. Surrogate pairs become U+FFFD.
    out = []
    for i in range(0, len(b) - 1, 2):
        c = b[i] | (b[i + 1] << 8) if little else (b[i] << 8) | b[i + 1]
        out.append(chr(c) if c < 0xD800 or c > 0xDFFF else "\ufffd")
    return "".join(out)


def _from_hex(s):
    if len(s) < 4 or len(s) % 2:
        return None
    for c in s:
        if c not in _HEX:
            return None
    raw = binascii.unhexlify(s)
    while raw and raw[-1] == 0:
        raw = raw[:-1]
    letters = 0
    for c in raw:
        if c < 32 or c == 127:
            return None
        if (65 <= c <= 90) or (97 <= c <= 122):
            letters += 1
    if letters < 2:
        return None
    return _decode8(raw).strip()


def integer(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def number(value):
    """A counter from an int, or from the leading digits of a text ("1920 INCHES, ...")."""
    i = integer(value)
    if i is not None:
        return i
    s = text(value)
    if not s:
        return None
    n = 0
    digits = 0
    for c in s:
        if "0" <= c <= "9":
            n = n * 10 + ord(c) - 48
            digits += 1
        elif c == "," and digits:
            continue
        else:
            break
    return n if digits else None


def ieee1284(s, key):
    """The value of `key` in an IEEE 1284 device id ("MFG:HP;MDL:LaserJet M404;...")."""
    if not s:
        return None
    for part in s.split(";"):
        k, sep, v = part.partition(":")
        if sep and k.strip().upper() == key.upper():
            return v.strip() or None
    return None


def squeeze(s):
    """Collapse runs of blanks into one space."""
    return " ".join(s.split()) if s else s


def clean_model(model, prefixes=(), suffixes=(), replace=()):
    """Model text without firmware noise (after ';'), vendor name prefix or marketing suffix."""
    if not model:
        return None
    model = squeeze(model.split(";", 1)[0])
    low = model.lower()
    for noise in (" version", " firmware"):
        i = low.find(noise)
        if i > 0:
            model, low = model[:i], low[:i]
    for p in prefixes:
        pl = p.lower()
        if low.startswith(pl) and len(model) > len(p):
            model = model[len(p):].strip()
            low = model.lower()
            break
    for sfx in suffixes:
        sl = sfx.lower()
        if low.endswith(sl) and len(model) > len(sfx):
            model = model[:-len(sfx)].strip()
            low = model.lower()
    for old, new in replace:
        model = model.replace(old, new)
    return model or None


# Supply kind from its description, for devices that leave prtMarkerSuppliesType out
# or say other/unknown; first match wins ("Waste Toner" is waste, not toner).
KIND_WORDS = (("waste", "waste"), ("toner", "toner"), ("ribbon", "ribbon"), ("ink", "ink"),
              ("drum", "drum"), ("imaging", "drum"), ("photoconductor", "drum"), ("opc", "drum"),
              ("developer", "developer"), ("maintenance", "maintenance"), ("cleaner", "cleaner"),
              ("cleaning", "cleaner"), ("fuser", "fuser"), ("fusing", "fuser"),
              ("transfer", "transfer"), ("belt", "transfer"), ("roller", "roller"), ("staple", "staples"),
              ("cartridge", "toner"))
COLOUR_WORDS = ("cyan", "magenta", "yellow", "color", "colour")


def kind_from_words(desc):
    if not desc:
        return None
    d = desc.lower()
    for w, kind in KIND_WORDS:
        if w in d:
            return kind
    return None


def colour_words(desc):
    if not desc:
        return False
    d = desc.lower()
    for w in COLOUR_WORDS:
        if w in d:
            return True
    return False


def percent_of(level, maxc):
    """0-100 rounded to the nearest, clamped; None when either side is unknown."""
    if level is None or not maxc:
        return None
    p = (level * 200 + maxc) // (2 * maxc)
    return 100 if p > 100 else p


def supply_state(level, percent, special=None, low_percent=LOW_PERCENT):
    """State from the raw level: RFC 3805 specials, then the profile's own codes, then percent."""
    if special and level in special:
        return special[level]
    if level is None:
        return "unknown"
    if level == -1:
        return "unrestricted"
    if level == -3:
        return "some-remaining"
    if level < 0:
        return "unknown"
    if level == 0:
        return "empty"
    if percent is not None and percent < low_percent:
        return "low"
    return "ok"


def build_supplies(rows, colorants, special=None, low_percent=LOW_PERCENT):
    """rows: {index: {column: value}} of prtMarkerSuppliesTable; colorants: {index: name}
    (column 3 may already hold the colorant's name, as cached on the box)."""
    out = []
    for idx in sorted(rows):
        r = rows[idx]
        mx = integer(r.get(8))
        lv = integer(r.get(9))
        tcode = integer(r.get(5))
        desc = r.get(6) if isinstance(r.get(6), str) else text(r.get(6), True)
        kind = supply_kind(tcode)
        if tcode in (None, 1, 2):
            kind = kind_from_words(desc) or kind
        elif tcode == 3 and desc and "ink" in desc.lower().split():
            kind = "ink"
        level = lv if lv is not None and lv >= 0 else None
        maxc = mx if mx is not None and mx > 0 else None
        if integer(r.get(7)) == 19 and maxc is None and level is not None:
            maxc = 100   # unit "percent" with an unknown max: the level is the percentage
        percent = percent_of(level, maxc)
        out.append({
            "index": idx,
            "kind": kind,
            "type_code": tcode,
            "color": r[3] if isinstance(r.get(3), str) else colorants.get(integer(r.get(3))),
            "description": desc,
            "unit": SUPPLY_UNITS.get(integer(r.get(7))),
            "max": mx if mx is not None and mx > 0 else None,
            "level": level,
            "percent": percent,
            "state": supply_state(lv, percent, special, low_percent),
        })
    return out


def decode_errors(value):
    """hrPrinterDetectedErrorState (bit 0 = MSB of the first octet) -> RFC 2790 names."""
    if not isinstance(value, (bytes, bytearray)) or not value:
        return []
    out = []
    for i, name in enumerate(ERROR_BITS):
        byte = i // 8
        if byte < len(value) and value[byte] & (0x80 >> (i % 8)):
            out.append(name)
    return out


def decode_alerts(rows):
    """prtAlertTable rows {index: {column: value}} -> [{severity, group, code, description}],
    plus the row of the group's table the alert names (prtAlertGroupIndex): `supply`, the
    `index` of one of the record's supplies, for the supplies group; `subunit` for others."""
    out = []
    for idx in sorted(rows):
        r = rows[idx]
        code = integer(r.get(7))
        group = integer(r.get(4))
        alert = {
            "severity": ALERT_SEVERITY.get(integer(r.get(2)), "other"),
            "group": ALERT_GROUP.get(group, "other"),
            "code": alert_code_name(code),
            "description": text(r.get(8), True),
        }
        row = integer(r.get(5))
        if row is not None and row > 0:   # -1 / 0: the alert names no row
            alert["supply" if group == ALERT_GROUP_SUPPLIES else "subunit"] = row
        out.append(alert)
    return out


def mac_text(v):
    if isinstance(v, (bytes, bytearray)) and len(v) == 6 and any(v):
        return ":".join("%02x" % b for b in v)
    return None


def has_mfp_words(s):
    if not s:
        return False
    s = s.lower()
    for w in MFP_WORDS:
        if w in s:
            return True
    return False


# Parts that must add up to a whole (within the tolerance): (whole, parts, flag).
# The counter keys (shared/spec/device-record.md); profiles fill them, device memory keeps them.
COUNTER_KEYS = ("total", "mono", "color", "print", "copy", "scan", "fax", "a3", "a4", "duplex",
                "print_mono", "print_color", "copy_mono", "copy_color", "scan_mono", "scan_color")
