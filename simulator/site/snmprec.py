"""snmpsim ``.snmprec`` recordings: parsing, moving a recording to the address it is
served on, and what a correct collector must read from it (the truth the tests compare
against). Pure functions over text and dicts, so they need no running agent."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator.site.errors import SiteError
from simulator.site.mib import (IF_ENTRY, IP_ADDR_ENTRY, OID_LIFE_COUNT, OID_SERIAL,
                                PRT_COLORANT_ENTRY, PRT_SUPPLIES_ENTRY, mac_text, parse_oid)


def readdress_snmprec(text: str, address: str) -> str:
    """The recording as its device would answer at `address`: the device's own IPv4
    address (the first in IP-MIB's ipAddrTable that is not 127.x or 0.0.0.0) becomes
    `address` there, so ipAdEntIfIndex.<address> names the interface that carries it.
    Lines stay in OID order (snmpsim answers GETNEXT from that order)."""
    prefix = ".".join(str(x) for x in IP_ADDR_ENTRY) + "."
    lines = text.splitlines()
    own = None
    for line in lines:
        oid = line.split("|", 1)[0]
        if oid.startswith(prefix + "2."):
            ip = oid[len(prefix) + 2:]
            if not ip.startswith("127.") and ip != "0.0.0.0":
                own = ip
                break
    if own is None:
        return text
    out = []
    for line in lines:
        parts = line.split("|", 2)
        oid = parts[0]
        if oid.startswith(prefix) and oid.endswith("." + own) and len(parts) == 3:
            col = oid[len(prefix):].split(".", 1)[0]
            value = address if col == "1" else parts[2]
            tag = "64" if col == "1" else parts[1]
            line = "%s%s.%s|%s|%s" % (prefix, col, address, tag, value)
        out.append(line)

    def key(line):
        try:
            return parse_oid(line.split("|", 1)[0])
        except SiteError:
            return ()
    return "\n".join(sorted(out, key=key)) + "\n"


def parse_snmprec(path: str | Path) -> dict[tuple[int, ...], tuple[str, Any]]:
    """Parse an snmpsim ``.snmprec`` file: {oid tuple: (type tag, python value)}.
    Strings come back as bytes, integers as int, OIDs and addresses as text."""
    out: dict[tuple[int, ...], tuple[str, Any]] = {}
    with open(path, "r", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            line = line.rstrip("\r\n")
            if not line or line.startswith("#"):
                continue
            try:
                oid, tag, value = line.split("|", 2)
            except ValueError:
                continue
            base = tag.split(":", 1)[0]
            hexed = base.endswith("x")
            base = base.rstrip("x")
            if base in ("2", "65", "66", "67", "70"):
                try:
                    v: Any = int(value) if value.strip() else 0
                except ValueError:
                    continue   # a damaged value (okilan_9450g has "6git3159"), which snmpsim cannot serve either
            elif base == "4":
                v = bytes.fromhex(value) if hexed else value.encode("utf-8", "surrogateescape")
            elif base == "64" and hexed:
                v = ".".join(str(b) for b in bytes.fromhex(value))
            else:
                v = value
            try:
                out[parse_oid(oid)] = (base, v)
            except SiteError:
                continue
    return out


def decode_text(raw: bytes) -> str:
    """An OCTET STRING as printers mean it: UTF-16 with a BOM, else UTF-8, else Latin-1."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return raw.decode("utf-16").rstrip("\0").strip()
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("utf-8").rstrip("\0").strip()
    except UnicodeDecodeError:
        return raw.decode("latin-1").rstrip("\0").strip()


def recording_mac(recs: dict, address: str) -> str | None:
    """The MAC a correct collector derives (spec: interface carrying the IP, else the
    first non-empty 6-byte ifPhysAddress)."""
    ip_tail = tuple(int(x) for x in address.split("."))
    r = recs.get(IP_ADDR_ENTRY + (2,) + ip_tail)
    if r is not None:
        mac = recs.get(IF_ENTRY + (6, int(r[1])))
        if mac is not None and isinstance(mac[1], bytes) and len(mac[1]) == 6:
            return mac_text(mac[1])
    for oid in sorted(recs):
        if oid[:len(IF_ENTRY) + 1] == IF_ENTRY + (6,) and len(oid) == len(IF_ENTRY) + 2:
            v = recs[oid][1]
            if isinstance(v, bytes) and len(v) == 6 and any(v):
                return mac_text(v)
    return None


def _value(recs: dict, oid):
    r = recs.get(parse_oid(oid))
    return None if r is None else r[1]


def _recorded_supplies(recs: dict) -> list[dict]:
    colorants = {}
    for oid, (_, v) in recs.items():
        if oid[:len(PRT_COLORANT_ENTRY) + 1] == PRT_COLORANT_ENTRY + (4,) and len(oid) == len(PRT_COLORANT_ENTRY) + 3:
            colorants[oid[-1]] = decode_text(v) if isinstance(v, bytes) else str(v)
    supplies = []
    idxs = sorted({oid[-1] for oid in recs
                   if oid[:len(PRT_SUPPLIES_ENTRY)] == PRT_SUPPLIES_ENTRY
                   and len(oid) == len(PRT_SUPPLIES_ENTRY) + 3 and oid[-2] == 1})
    for i in idxs:
        col = {c: _value(recs, PRT_SUPPLIES_ENTRY + (c, 1, i)) for c in (3, 5, 6, 7, 8, 9)}
        desc = col[6]
        colorant_index = col[3]
        supplies.append({
            "index": i,
            "description": decode_text(desc) if isinstance(desc, bytes) else desc,
            "level": col[9],
            "max": col[8],
            "type_code": col[5],
            "unit_code": col[7],
            "color": colorants.get(colorant_index) if colorant_index else None,
        })
    return supplies


def recording_truth(device, recs: dict) -> dict:
    """What a recorded printer serves; the site description fills in a serial or total
    that the recording only holds in a vendor MIB."""
    spec = device.spec
    serial = _value(recs, OID_SERIAL)
    serial_source = "prtGeneralSerialNumber" if serial is not None else None
    if isinstance(serial, bytes):
        serial = decode_text(serial)
    if serial is not None:
        serial = serial.strip() or None
    if serial is None and spec.get("serial") is not None:
        serial = str(spec["serial"])
        serial_source = spec.get("serial_source", "site.yaml")
    total = _value(recs, OID_LIFE_COUNT)
    total_source = "prtMarkerLifeCount" if total is not None else None
    if total is None and spec.get("total") is not None:
        total = int(spec["total"])
        total_source = spec.get("total_source", "site.yaml")
    return {
        "name": device.name, "kind": device.kind, "ip": device.address, "port": device.port,
        "manufacturer": device.manufacturer, "model": device.model,
        "serial": serial, "serial_source": serial_source,
        "total": total, "total_source": total_source,
        "mac": recording_mac(recs, device.address),
        "supplies": _recorded_supplies(recs),
    }
