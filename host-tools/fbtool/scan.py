"""`fbtool scan`: run the firmware's collector once on MicroPython and show what it found.

A printer's strings are shown through `printable()`: control characters and terminal escapes
a printer sends (or rich markup) must not act on the engineer's terminal. The records keep
the data as the printer sent it (`--json` escapes it the JSON way).
"""
import json
import os
import subprocess
import sys
import unicodedata

from . import paths
from .errors import FatalError

sys.path.insert(0, paths.FIRMWARE)
from fleetbox import targets  # noqa: E402  (the firmware's own parser: same rules as the box)
from fleetbox import usm  # noqa: E402


class ScanError(FatalError):
    pass


LOG_LEVELS = ("off", "info", "debug")   # the box's log threshold by -v count (docs/logging.md)


def parse_v3(spec, context=""):
    """`USER[:AUTHPROTO:AUTHPASS[:PRIVPROTO:PRIVPASS]]` -> the JSON-able v3 credential that
    mp_scan.py hands to snmp.Credential.v3; ScanError on anything malformed."""
    parts = spec.split(":")
    if len(parts) not in (1, 3, 5) or not parts[0]:
        raise ScanError("--v3 wants USER, USER:AUTHPROTO:AUTHPASS or "
                        "USER:AUTHPROTO:AUTHPASS:PRIVPROTO:PRIVPASS (got %d fields)" % len(parts))
    parts += [None] * (5 - len(parts))
    user, auth, auth_pass, priv, priv_pass = parts
    if auth is not None and auth.upper() not in usm.AUTH_PROTOCOLS:
        raise ScanError("--v3: unknown AUTHPROTO %r (one of %s)" % (auth, "|".join(usm.AUTH_PROTOCOLS)))
    if priv is not None and priv.upper() not in ("AES", "AES192", "AES256", "AES192C", "AES256C"):
        what = "DES is not supported (broken cipher); set the device to AES" if "DES" in priv.upper() \
            else "unknown PRIVPROTO %r (one of AES|AES192|AES256)" % priv
        raise ScanError("--v3: " + what)
    try:
        usm.User(user, auth, auth_pass, priv, priv_pass)
    except usm.UsmError as e:
        raise ScanError("--v3: %s" % e)
    return {"user": user, "auth": auth and auth.upper(), "auth_pass": auth_pass,
            "priv": priv and priv.upper(), "priv_pass": priv_pass, "context": context}


def run(target_specs, community="public", version="2c", port=161, exclude=(), timeout_ms=1000,
        retries=1, workers=32, v3=None, context=None, kind="full", profiles_path=None, web_ports=None,
        verbose=0):
    """Scan on MicroPython; returns (records sorted by ip, addresses probed).
    v3: a `--v3` spec (see parse_v3), with version "3" (or None); context: its context name.
    verbose: 0 only the result; 1 the box's log (info and up) on stderr; 2 its debug lines too."""
    if v3 is not None and version not in (None, "3"):
        raise ScanError("--v3 goes with --snmp-version 3, not %s" % version)
    if v3 is None and version == "3":
        raise ScanError("--snmp-version 3 needs --v3 USER[:AUTHPROTO:AUTHPASS[:PRIVPROTO:PRIVPASS]]")
    if context and v3 is None:
        raise ScanError("--context is an SNMPv3 option: give --v3 too")
    cred = parse_v3(v3, context or "") if v3 is not None else None
    version = "3" if v3 is not None else (version or "2c")
    for spec in list(target_specs) + list(exclude):
        try:
            targets.parse(spec, port)
        except targets.TargetError as e:
            raise ScanError(str(e))
    opts = {"targets": list(target_specs), "exclude": list(exclude), "community": community,
            "version": version, "v3": cred, "port": port, "timeout_ms": timeout_ms, "retries": retries,
            "workers": workers,
            "kind": kind, "profiles": profiles_path or compiled_profiles(), "web_ports": web_ports or {},
            "log_level": LOG_LEVELS[min(verbose, len(LOG_LEVELS) - 1)]}
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mp_scan.py")
    proc = subprocess.run([paths.micropython(), "-X", "heapsize=4M", script, paths.FIRMWARE],
                          input=json.dumps(opts) + "\n", capture_output=True, text=True)
    records, probed = [], None
    for line in proc.stdout.splitlines():
        if line.startswith("REC "):
            records.append(json.loads(line[4:]))
        elif line.startswith("DONE "):
            probed = int(line.split()[1])
        elif line.strip() and verbose:
            print(printable(line, None), file=sys.stderr)   # the box's log (quiet scans drop even the unlevelled lines)
    if proc.returncode != 0 or probed is None:
        out = (proc.stderr or proc.stdout).strip()
        last = out.split("\n")[-1] if out else "exit status %d" % proc.returncode
        raise ScanError("the collector failed on MicroPython: " + last, hint="--debug shows its output",
                        detail=out[-4000:])
    records.sort(key=lambda r: targets.ip_to_int(r["ip"]))
    return records, probed


def compiled_profiles():
    """build/profiles.json, compiled afresh from profiles/*.yaml (the box's own file format)."""
    from . import profiles
    out = os.path.join(paths.BUILD, "profiles.json")
    try:
        profiles.compile_to(out)
    except profiles.ProfileSourceError as e:
        raise ScanError("profiles: %s" % e, hint=e.hint)
    return out


DISPLAY_CHARS = 64     # a table cell shows at most this much of a printer's string


def printable(value, limit=DISPLAY_CHARS):
    """`value` as text safe for a terminal: control and format characters (C0, DEL, C1, bidi
    overrides, zero-width ones) become visible escapes (\\x1b), long text is cut with an ellipsis."""
    out = []
    for ch in str(value):
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append("\\x%02x" % ord(ch) if ord(ch) < 0x100 else "\\u%04x" % ord(ch) if ord(ch) < 0x10000
                       else "\\U%08x" % ord(ch))
        else:
            out.append(ch)
    text = "".join(out)
    if limit is not None and len(text) > limit:
        text = text[:limit - 1] + "\u2026"
    return text


def lowest_supply(rec):
    levels = [s["percent"] for s in rec.get("supplies") or [] if s.get("percent") is not None]
    return min(levels) if levels else None


def table(records, title):
    from rich.table import Table
    from rich.text import Text
    t = Table(title=title)
    for col in ("address", "vendor", "model", "serial", "total pages", "lowest supply %"):
        t.add_column(col, justify="right" if col in ("total pages", "lowest supply %") else "left")
    for r in records:
        low = lowest_supply(r)
        total = (r.get("counters") or {}).get("total")
        cells = ("%s:%d" % (r["ip"], r["port"]) if r.get("port", 161) != 161 else r["ip"],
                 r.get("manufacturer") or "?", r.get("model") or "?", r.get("serial") or "-",
                 "-" if total is None else total, "-" if low is None else low)
        t.add_row(*(Text(printable(c)) for c in cells))    # Text: no rich markup either
    return t
