"""Vendor profiles on the box: load the compiled file, pick a device's profile, read its rules.

The YAML sources live in profiles/ and are compiled by `fbtool profiles compile` into one
compact file of JSON lines (docs/profiles.md). The box loads the signed pack in force when one
verifies (fleetbox.pack), else the one shipped in the firmware slot.
"""
import array
import json
import re

from fleetbox import records
from fleetbox.errors import FleetboxError

FORMAT = 1
NAMES = ("model", "serial", "firmware", "brand", "install_date")
COUNTER_KEYS = records.COUNTER_KEYS


class ProfileError(FleetboxError):
    pass


def load(paths):
    """The profile library from the first readable file among `paths` (empty when none)."""
    for path in paths:
        try:
            f = open(path)
        except OSError:
            continue
        try:
            return Library(path, f)
        finally:
            f.close()
    return Library(None, None)


class Library:
    """Compiled profiles, indexed by vendor/enterprises/descr; a profile's rules are read from
    the file (one JSON line per profile) when a device first needs them, and kept (a few
    vendors per site), so the box never holds every vendor's rules at once.

    The index is one string (a line per profile: vendor, enterprises, descr words, tab
    separated) and an array of file offsets: ~0.8 KB of heap for 16 vendors, where a tuple
    of tuples of strings per profile took ~5.6 KB."""

    CACHE = 1

    def __init__(self, path, f):
        self.path = path
        self.table = ""
        self.offsets = array.array("L")
        self.cache = {}
        if f is None:
            return
        head = f.readline()
        try:
            h = json.loads(head)
        except ValueError as e:
            raise ProfileError("%s is not a profile file: %s" % (path, e))
        if not isinstance(h, dict) or h.get("format") != FORMAT:
            raise ProfileError("%s: not a fleetbox profile file of format %d" % (path, FORMAT))
        pos = len(head.encode()) if isinstance(head, str) else len(head)
        lines = []
        while True:
            line = f.readline()
            if not line:
                break
            try:
                p = json.loads(line)
            except ValueError as e:
                raise ProfileError("%s: profile %d is not JSON: %s" % (path, len(self.offsets) + 1, e))
            if not isinstance(p, dict) or not isinstance(p.get("vendor"), str):
                raise ProfileError("%s: every profile needs a vendor" % path)
            ents = ",".join(str(e) for e in p.get("enterprises", ()) if isinstance(e, int))
            fields = [p["vendor"], ents] + list(p.get("descr", ()))
            for x in fields:
                if "\t" in x or "\n" in x:
                    raise ProfileError("%s: %s: a tab or line break in %r" % (path, p["vendor"], x))
            lines.append("\t".join(fields))
            self.offsets.append(pos)
            pos += len(line.encode()) if isinstance(line, str) else len(line)
        if len(self.offsets) != h.get("profiles"):
            raise ProfileError("%s: truncated (%d of %s profiles)" % (path, len(self.offsets), h.get("profiles")))
        self.table = "\n".join(lines)

    def __len__(self):
        return len(self.offsets)

    def vendors(self):
        return [v for v, _, _ in self.candidates()]

    def get(self, vendor):
        p = self.cache.get(vendor)
        if p is not None:
            return p
        i = 0
        for v, _, _ in self.candidates():
            if v == vendor:
                with open(self.path) as f:
                    f.seek(self.offsets[i])
                    p = json.loads(f.readline())
                if len(self.cache) >= self.CACHE:
                    self.cache.pop(next(iter(self.cache)))
                self.cache[vendor] = p
                return p
            i += 1
        return None

    def candidates(self):
        """(vendor, enterprises, descr words) of each profile, in file order (built as read:
        a few short-lived strings per profile)."""
        t = self.table
        i = 0
        for _ in range(len(self.offsets)):
            j = t.find("\n", i)
            if j < 0:
                j = len(t)
            fields = t[i:j].split("\t")
            yield fields[0], [int(e) for e in fields[1].split(",") if e], fields[2:]
            i = j + 1


def check(data, where="profiles"):
    """A list of profile dicts (tests and hand-made profile sets) checked like a file's."""
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("profiles"), list):
        raise ProfileError("%s: not a fleetbox profile set of format %d" % (where, FORMAT))
    for p in data["profiles"]:
        if not isinstance(p, dict) or not isinstance(p.get("vendor"), str):
            raise ProfileError("%s: every profile needs a vendor" % where)
    return data["profiles"]


def enterprise(sys_object_id):
    if sys_object_id and sys_object_id.startswith("1.3.6.1.4.1."):
        arc = sys_object_id.split(".")[6:7]
        if arc and arc[0].isdigit():
            return int(arc[0])
    return None


def match(profiles, sys_object_id, descr):
    """The profile for a device: sysObjectID's enterprise first, then words of sysDescr.
    `profiles`: a Library, or a list of profile dicts."""
    ent = enterprise(sys_object_id)
    d = (descr or "").lower()
    if isinstance(profiles, Library):
        cands = profiles.candidates()
    else:
        cands = ((p["vendor"], p.get("enterprises", ()), p.get("descr", ())) for p in profiles)
    best, score = None, 0
    for vendor, ents, words in cands:
        s = 0
        if ent is not None and ent in ents:
            s = 3
        for w in words:
            w = w.lower()
            if d.startswith(w):
                s = max(s, 2)
            elif (" " + w) in d:
                s = max(s, 1)
        if s > score:
            best, score = vendor, s
    if best is None:
        return None
    if isinstance(profiles, Library):
        return profiles.get(best)
    for p in profiles:
        if p["vendor"] == best:
            return p
    return None


def oids(profile, counters=True, ident=True):
    """Every OID the profile's rules read with a GET."""
    out = []
    if not profile:
        return out
    if ident:
        # Only a leading OID rule: later ones are asked only if earlier rules found nothing.
        for name in NAMES:
            rules = profile.get(name, ())
            if rules and "oid" in rules[0]:
                _src_oids(rules[0], out)
    if counters:
        c = profile.get("counters") or {}
        for k in COUNTER_KEYS:
            if k in c:
                _src_oids(c[k], out)
        for src in (c.get("vendor") or {}).values():
            _src_oids(src, out)
        for b in c.get("blobs", ()):
            if b["oid"] not in out:
                out.append(b["oid"])
    return out


def _src_oids(src, out):
    if "oid" in src and src["oid"] not in out:
        out.append(src["oid"])
    for o in src.get("sum", ()):
        if o not in out:
            out.append(o)


def pending(profile, ctx, names=NAMES):
    """OIDs of text rules that would be tried next but were not read yet."""
    out = []
    for name in names:
        for src in (profile or {}).get(name, ()):
            if "hr" in src and ctx.get("hr_later"):
                break   # hrDeviceDescr is on its way: what comes after it may not be needed
            if "oid" in src and src["oid"] not in ctx["get"]:
                if src["oid"] not in out:
                    out.append(src["oid"])
                break
            if extract_text(src, ctx):
                break
    return out


def search(pattern, s):
    """re.search, where a pattern MicroPython's re finds too complex matches nothing (the
    compiler keeps them simple; a profile update must not cost the record)."""
    try:
        return re.search(pattern, s)
    except ValueError:
        return None


def extract_text(src, ctx):
    """Text from one source rule, or None. ctx: {"get": {oid: value}, "hr": str, "sysdescr": str}."""
    if "oid" in src:
        s = records.text(ctx["get"].get(src["oid"]), True)
    elif "hr" in src:
        s = ctx.get("hr")
    elif "sysdescr" in src:
        s = ctx.get("sysdescr")
    else:
        return None
    if not s:
        return None
    if "ieee1284" in src:
        s = records.ieee1284(s, src["ieee1284"])
        if not s:
            return None
    if "after" in src:
        i = s.find(src["after"])
        if i < 0:
            return None
        s = s[i + len(src["after"]):]
    if "before" in src:
        i = s.find(src["before"])
        if i >= 0:
            s = s[:i]
    if "re" in src:
        m = search(src["re"], s)
        if not m:
            return None
        s = m.group(1)
    s = s.strip()
    if s and "only" in src:
        low = s.lower()
        for w in src["only"]:
            if w.lower() == low:
                return w
        return None
    return s or None


def provenance(src, profile):
    where = src.get("oid") or ("sum(" + ",".join(src["sum"]) + ")" if "sum" in src else
                               "hrDeviceDescr" if "hr" in src else "sysDescr")
    return "profile %s: %s" % (profile["vendor"], where)


def first_text(profile, name, ctx):
    """(value, provenance) of the first rule of `name` that yields text, else (None, None)."""
    for src in (profile or {}).get(name, ()):
        v = extract_text(src, ctx)
        if v:
            return v, provenance(src, profile)
    return None, None


def extract_counter(src, ctx):
    if "sum" in src:
        total = 0
        for o in src["sum"]:
            v = records.number(ctx["get"].get(o))
            if v is None or v < 0:
                return None
            total += v
        return total
    if "oid" in src:
        v = ctx["get"].get(src["oid"])
        v = records.number(v) if src.get("text") else records.integer(v)
        return v if v is not None and v >= 0 else None
    return None


def counters(profile, ctx, into, sources):
    """Fill `into` (a counters object) with the profile's counters the device answered."""
    c = (profile or {}).get("counters") or {}
    for k in COUNTER_KEYS:
        if k in c and k not in into:
            v = extract_counter(c[k], ctx)
            if v is not None:
                into[k] = v
                sources["counters." + k] = provenance(c[k], profile)
    vendor = {}
    for name, src in (c.get("vendor") or {}).items():
        v = extract_counter(src, ctx)
        if v is not None:
            vendor[name] = v
    if vendor:
        into["vendor"] = vendor
        sources["counters.vendor"] = "profile " + profile["vendor"]
