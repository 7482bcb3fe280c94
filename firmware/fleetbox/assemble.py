"""Record assembly: values already read in, device-record fields out (no I/O).

Identity, counters, supplies, status and the device's shape (colour, duplex, technology,
typology), each with its provenance in `sources`; every function here is pure, so it is
tested without sockets (tests/firmware/test_assemble.py) on both runtimes. Decoding of
single values is fleetbox.records; vendor rules are fleetbox.profiles.
"""
from fleetbox import oids, profiles, records

CONSUMABLES = ("toner", "ink")
SLEEP_WORDS = ("sleep", "energy sav", "power sav", "low power")
# sysDescr texts that name a network card or agent, not a printer model.
NOT_MODELS = ("multi-environment", "printing system", "built-in", "printserver", "print server",
              "zebranet", "zebra wired", " nc-")
_EMPTY = (None, [], {}, "")


# ---------------------------------------------------------------------- identity

def identity(profile, ctx, follow, serial, need_entity, printer_row, sources):
    """(manufacturer, model, serial, firmware, brand) from the profile's rules, the
    Printer-MIB serial already read (`serial`), hrDeviceDescr, and ENTITY-MIB in `follow`
    when it was asked (`need_entity`); brand only where it differs from the manufacturer."""
    manufacturer = profile["vendor"] if profile else None
    if profile:
        sources["manufacturer"] = "profile %s" % profile["vendor"]
    if not serial:
        serial = records.text(follow.get(oids.ENT_SERIAL)) if need_entity else None
        if serial:
            sources["serial"] = "entPhysicalSerialNum"
        else:
            serial, src = profiles.first_text(profile, "serial", ctx)
            if serial:
                sources["serial"] = src
    model, src = derive_model(profile, ctx, printer_row, follow.get(oids.ENT_MODEL) if need_entity else None)
    if model:
        sources["model"] = src
    firmware, src = profiles.first_text(profile, "firmware", ctx)
    if not firmware and need_entity:
        firmware, src = records.text(follow.get(oids.ENT_FIRMWARE)), "entPhysicalFirmwareRev"
    if firmware:
        sources["firmware"] = src
    brand, src = profiles.first_text(profile, "brand", ctx)
    if brand and manufacturer and brand.lower() != manufacturer.lower():
        sources["brand"] = src
    else:
        brand = None
    return manufacturer, model, serial, firmware, brand


def base_record(host, port, sysv, mac, manufacturer, model, serial, firmware, sys_object_id, descr,
                brand=None):
    """The record's identification fields (shared/spec/device-record.md), in record order."""
    uptime = records.integer(sysv.get(oids.SYS_UPTIME))
    rec = {
        "ip": host,
        "port": port,
        "mac": mac,
        "hostname": records.text(sysv.get(oids.SYS_NAME)),
        "manufacturer": manufacturer,
        "model": model,
        "serial": serial,
        "firmware": firmware,
        "location": records.text(sysv.get(oids.SYS_LOCATION)),
        "contact": records.text(sysv.get(oids.SYS_CONTACT)),
        "sys_object_id": sys_object_id,
        "sys_descr": descr,
        "uptime_s": uptime // 100 if uptime is not None else None,
    }
    if brand:
        rec["brand"] = brand
    return rec


def derive_model(profile, ctx, printer_idx=None, entity_model=None):
    """(model, provenance): the profile's rules, else hrDeviceDescr, else ENTITY-MIB, else
    sysDescr; cleaned of firmware noise, the vendor name and marketing suffixes."""
    p = profile or {}
    model, src = None, None
    for rule in p.get("model", ()):
        v = profiles.extract_text(rule, ctx)
        if v and not ("sysdescr" in rule and not_model(v)):
            model, src = v, profiles.provenance(rule, p)
            break
    if not model and ctx.get("hr"):
        model, src = ctx["hr"], "hrDeviceDescr" + ("" if printer_idx is None else ".%d" % printer_idx)
    if not model and entity_model is not None:
        model, src = records.text(entity_model), "entPhysicalModelName"
    if not model and ctx.get("sysdescr") and not not_model(ctx["sysdescr"]):
        model, src = ctx["sysdescr"], "sysDescr"
    if not model:
        return None, None
    vendor = p.get("vendor")
    prefixes = p.get("model_prefixes") or ([vendor + " "] if vendor else [])
    model = records.clean_model(model, prefixes, p.get("model_suffixes", ()), p.get("model_replace", ()))
    if model and " " in model:
        head, last = model.rsplit(" ", 1)
        if "." in last and last.replace(".", "").isdigit():
            model = head   # a trailing firmware version ("Aficio MP C3002 2.20")
    return model, (src if model else None)


def not_model(s):
    """sysDescr text that names a network card or agent, not a printer model."""
    s = " " + s.lower()
    for w in NOT_MODELS:
        if w in s:
            return True
    return False


def needs_hr(profile, got, descr):
    """Whether the model may come from hrDeviceDescr: no profile rule before it has given one."""
    ctx = {"get": got, "hr": None, "sysdescr": descr}
    for rule in (profile or {}).get("model", ()):
        if "hr" in rule or ("oid" in rule and rule["oid"] not in got):
            return True
        v = profiles.extract_text(rule, ctx)
        if v and not ("sysdescr" in rule and not_model(v)):
            return False
    return True


# ---------------------------------------------------------------------- counters

def life_count(got, counters, sources):
    """The Printer-MIB's total (prtMarkerLifeCount), when the agent has a sane one."""
    total = records.integer(got.get(oids.PRT_LIFE_COUNT))
    if total is not None and total >= 0:
        counters["total"] = total
        sources["counters.total"] = "prtMarkerLifeCount"


# ---------------------------------------------------------------------- supplies

def statics_fit(cached, rows):
    """The cached static columns still describe these rows: same indexes, no level rose."""
    c = cached.get("rows") or {}
    if sorted(c) != sorted(str(i) for i in rows):
        return False
    for idx, r in rows.items():
        before, now = c[str(idx)][5], records.integer(r.get(9))
        mx = c[str(idx)][3]
        if isinstance(before, int) and isinstance(now, int) and now > before:
            if before < 0 or now < 0 or now - before > max(1, (mx or 100) // 20):
                return False
    return True


def supplies(rows, cached, colorant_rows, profile, scan):
    """(the record's supplies, {colorant index: name}). The rows' static columns come from
    the flash cache (`cached`, colorant by name in column 3) or, read from the device,
    have their description decoded in place. Every row; a `parts` scan: all but toner, ink."""
    colorants = {}
    if cached:
        for idx, r in rows.items():
            kind, desc, unit, mx, colour, _ = cached["rows"][str(idx)]
            r.update({5: kind, 6: desc, 7: unit, 8: mx, 3: colour})
    else:
        for idx, r in colorant_rows.items():
            colorants[idx] = records.text(r.get(4), True)
        for r in rows.values():
            if 6 in r:
                r[6] = records.text(r[6], True)
    p = profile or {}
    special = None
    if p.get("supply_special"):
        special = {}
        for lv, st in p["supply_special"]:
            special[lv] = st
    out = records.build_supplies(rows, colorants, special, p.get("low_percent", records.LOW_PERCENT))
    if scan == "parts":
        out = [s for s in out if s["kind"] not in CONSUMABLES]
    return out, colorants


# ---------------------------------------------------------------------- status

def status(printer_values, console_rows, alert_rows):
    """The record's status. printer_values: hrDeviceStatus, hrPrinterStatus and
    hrPrinterDetectedErrorState of the printer's row, or None (no row known)."""
    st = {"device": None, "printer": None, "errors": [], "display": [], "alerts": []}
    if printer_values is not None:
        device, printer, errors = printer_values
        st["device"] = records.DEVICE_STATUS.get(records.integer(device), "unknown")
        st["printer"] = records.PRINTER_STATUS.get(records.integer(printer), "unknown")
        st["errors"] = records.decode_errors(errors)
    for _idx, r in sorted(console_rows.items()):
        line = records.text(r.get(2), True)
        if line:
            st["display"].append(line)
    st["alerts"] = records.decode_alerts(alert_rows)
    text_seen = " ".join(st["display"]).lower()
    st["power"] = "on"
    for w in SLEEP_WORDS:
        if w in text_seen:
            st["power"] = "sleep"
    for a in st["alerts"]:
        if a["code"] == "subunitPowerSaver":
            st["power"] = "sleep"
    # docs/collection.md: a sleeping printer is "asleep", never "down"
    st["reachability"] = "asleep" if st["power"] == "sleep" else "reachable"
    return st


# ---------------------------------------------------------------------- shape

def typology(p, model, descr, counters):
    """(typology, why) from what is already read; the collector then looks at
    hrDeviceDescr rows when this is not "mfp" and the profile has no mfp_models."""
    if p.get("typology"):
        return p["typology"], "profile"
    for k in ("copy", "scan", "fax"):
        if k in counters:
            return "mfp", "counters." + k
    if descr and records.has_mfp_words(descr):
        return "mfp", "sysDescr"
    for m in p.get("mfp_models", ()):
        if model and m in model:
            return "mfp", "profile model name"
    if model:
        # a single-function printer: none of the signs above (nor, without mfp_models,
        # a scanner, copier or fax row in hrDeviceTable: the collector looks)
        return "printer", "profile model names" if p.get("mfp_models") else "no copier, scanner or fax seen"
    return "unknown", None


# ---------------------------------------------------------------------- extra agent

def merge_extra(rec, extra, xport):
    """Fold the reading of a vendor's second agent (Canon: UDP 47545) into the device's record.

    It is the same device, so it stays one record (port: the main agent's); the second
    agent only fills what the main one left unknown, each value's source naming its port."""
    src = rec.setdefault("sources", {})
    xsrc = extra.get("sources") or {}
    for k, v in extra.items():
        if k in ("sources", "counters", "ip", "port") or v in _EMPTY or rec.get(k) not in _EMPTY:
            continue
        rec[k] = v
        src[k] = ("udp:%d " % xport) + xsrc.get(k, "")
    cnt = rec.get("counters")
    if cnt is None:
        cnt = rec["counters"] = {}
    for k, v in (extra.get("counters") or {}).items():
        if k == "vendor":
            vend = cnt.get("vendor")
            if vend is None:
                vend = cnt["vendor"] = {}
            for name, n in v.items():
                if name not in vend:
                    vend[name] = n
                    src["counters.vendor." + name] = ("udp:%d " % xport) + xsrc.get("counters.vendor." + name, "")
        elif k not in cnt:
            cnt[k] = v
            src["counters." + k] = ("udp:%d " % xport) + xsrc.get("counters." + k, "")
    return rec
