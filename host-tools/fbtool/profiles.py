"""`fbtool profiles compile`: vendor profiles in YAML (profiles/*.yaml) -> the box's compact file.

The language is documented in docs/profiles.md. The output is JSON lines: a header
`{"format":1,"profiles":N}`, then one compact profile per line, sorted by vendor; the box
indexes it and reads a vendor's line when a device needs it (firmware/fleetbox/profiles.py).
Every mistake in a YAML file is an error naming the file and the key, never a silently ignored rule.
"""
import glob
import json
import os
import re
import tempfile

import yaml

from . import paths
from .errors import FatalError, os_problem, yaml_problem

FORMAT = 1
PROFILES_DIR = os.path.join(paths.ROOT, "profiles")
TOP_KEYS = {"vendor", "enterprises", "descr", "model", "serial", "firmware", "brand",
            "model_prefixes", "model_suffixes", "model_replace", "mfp_models", "counters",
            "supply_special", "low_percent", "technology", "typology", "extra_agent", "web",
            "install_date", "model_rules", "duplex_words"}
TEXT_RULES = ("model", "serial", "firmware", "brand", "install_date")
SOURCE_KEYS = {"oid", "hr", "sysdescr", "after", "before", "ieee1284", "only", "re"}
COUNTER_KEYS = ("total", "mono", "color", "print", "copy", "scan", "fax", "a3", "a4", "duplex",
                "print_mono", "print_color", "copy_mono", "copy_color", "scan_mono", "scan_color")
STATES = ("ok", "low", "empty", "some-remaining", "unknown", "unrestricted")
TECHNOLOGIES = ("laser", "inkjet", "thermal", "solid-ink", "impact", "other")
MODEL_RULE_KEYS = {"re", "technology", "duplex"}
MAX_MODEL_RULES = 16
OID_RE = re.compile(r"^1\.3\.6\.1(\.(0|[1-9][0-9]*))+$")


class ProfileSourceError(FatalError):
    """A mistake in profiles/*.yaml (the firmware's fleetbox.profiles.ProfileError is about the compiled file)."""


def _oid(v, where):
    s = str(v).strip().lstrip(".")
    if not OID_RE.match(s):
        raise ProfileSourceError("%s: %r is not a dotted OID under 1.3.6.1" % (where, v))
    return s


def _strings(v, where):
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise ProfileSourceError("%s: expected a list of non-empty strings" % where)
    return v


def _text_source(src, where):
    if src in ("hr", "sysdescr"):
        return {src: True}
    if isinstance(src, str):
        return {"oid": _oid(src, where)}
    if not isinstance(src, dict):
        raise ProfileSourceError("%s: a source is 'hr', 'sysdescr', an OID or a mapping" % where)
    unknown = set(src) - SOURCE_KEYS
    if unknown:
        raise ProfileSourceError("%s: unknown keys %s" % (where, sorted(unknown)))
    kinds = [k for k in ("oid", "hr", "sysdescr") if k in src]
    if len(kinds) != 1:
        raise ProfileSourceError("%s: a source names exactly one of oid, hr, sysdescr" % where)
    out = {"oid": _oid(src["oid"], where)} if "oid" in src else {kinds[0]: True}
    for k in ("after", "before", "ieee1284"):
        if k in src:
            if not isinstance(src[k], str) or not src[k]:
                raise ProfileSourceError("%s.%s: expected a non-empty string" % (where, k))
            out[k] = src[k]
    if "only" in src:
        out["only"] = _strings(src["only"], where + ".only")
    if "re" in src:
        out["re"] = _pattern(src["re"], where, 1)
    return out


def _model_rules(rules, where):
    """[{re, technology?, duplex?}]: what a model name says of the device's build
    (docs/profiles.md "Model rules"); the first rule that names a feature and matches wins."""
    if not isinstance(rules, list) or not 1 <= len(rules) <= MAX_MODEL_RULES:
        raise ProfileSourceError("%s: expected a list of 1-%d rules" % (where, MAX_MODEL_RULES))
    out = []
    for i, rule in enumerate(rules):
        w = "%s[%d]" % (where, i)
        if not isinstance(rule, dict) or "re" not in rule:
            raise ProfileSourceError("%s: a rule is {re, technology, duplex}" % w)
        unknown = set(rule) - MODEL_RULE_KEYS
        if unknown:
            raise ProfileSourceError("%s: unknown keys %s" % (w, sorted(unknown)))
        r = {"re": _pattern(rule["re"], w, None)}
        if "technology" in rule:
            if rule["technology"] not in TECHNOLOGIES:
                raise ProfileSourceError("%s.technology: one of %s" % (w, TECHNOLOGIES))
            r["technology"] = rule["technology"]
        if "duplex" in rule:
            if not isinstance(rule["duplex"], bool):
                raise ProfileSourceError("%s.duplex: true or false" % w)
            r["duplex"] = rule["duplex"]
        if len(r) == 1:
            raise ProfileSourceError("%s: names neither technology nor duplex" % w)
        out.append(r)
    return out


def _counter_source(src, where):
    if isinstance(src, str):
        return {"oid": _oid(src, where)}
    if not isinstance(src, dict):
        raise ProfileSourceError("%s: a counter is an OID, {oid: ...} or {sum: [...]}" % where)
    unknown = set(src) - {"oid", "sum", "text"}
    if unknown:
        raise ProfileSourceError("%s: unknown keys %s" % (where, sorted(unknown)))
    if ("oid" in src) == ("sum" in src):
        raise ProfileSourceError("%s: a counter has exactly one of oid, sum" % where)
    if "sum" in src:
        if not isinstance(src["sum"], list) or len(src["sum"]) < 2:
            raise ProfileSourceError("%s.sum: expected a list of at least two OIDs" % where)
        return {"sum": [_oid(o, where + ".sum") for o in src["sum"]]}
    out = {"oid": _oid(src["oid"], where)}
    if src.get("text"):
        out["text"] = True
    return out


MAX_TABLE_ROWS = 256
TABLE_KEYS = {"table", "type", "value", "rows", "map"}
BLOB_KEYS = {"oid", "format", "map"}
BLOB_FORMATS = ("tlv8",)
MAX_SPECS = 4


def _int(v, lo, hi, where):
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ProfileSourceError("%s: expected an integer %d-%d" % (where, lo, hi))
    return v


def _list_of(v, where, one):
    if not isinstance(v, list) or not 1 <= len(v) <= MAX_SPECS:
        raise ProfileSourceError("%s: expected a list of 1-%d entries" % (where, MAX_SPECS))
    return [one(x, "%s[%d]" % (where, i)) for i, x in enumerate(v)]


def _counter_key(k, where):
    k = str(k)
    if k in COUNTER_KEYS or (k.startswith("vendor.") and len(k) > 7):
        return k
    raise ProfileSourceError("%s: %r is not a counter (one of %s, or vendor.NAME)"
                             % (where, k, ", ".join(COUNTER_KEYS)))


def _mapping(m, where, code):
    if not isinstance(m, dict) or not m:
        raise ProfileSourceError("%s: expected a mapping counter -> codes" % where)
    out = {}
    for k, v in m.items():
        key = _counter_key(k, where)
        items = v if isinstance(v, list) else [v]
        if not items:
            raise ProfileSourceError("%s.%s: expected at least one code" % (where, key))
        out[key] = [code(x, "%s.%s" % (where, key)) for x in items]
    return out


def _type_range(x, where):
    """10 -> [10, 10]; "200-203" -> [200, 203]."""
    if isinstance(x, str) and re.match(r"^[0-9]+-[0-9]+$", x.strip()):
        lo, hi = (int(p) for p in x.strip().split("-"))
    elif isinstance(x, int) and not isinstance(x, bool):
        lo = hi = x
    else:
        raise ProfileSourceError("%s: %r is not a type code or a range \"LO-HI\"" % (where, x))
    if not 0 <= lo <= hi < 2 ** 31:
        raise ProfileSourceError("%s: range %r is empty or out of 0..2^31-1" % (where, x))
    return [lo, hi]


def _counter_table(t, where):
    if not isinstance(t, dict):
        raise ProfileSourceError("%s: a table is {table, type, value, rows, map}" % where)
    unknown = set(t) - TABLE_KEYS
    if unknown or not {"table", "type", "value", "map"} <= set(t):
        raise ProfileSourceError("%s: needs table, type, value, map (rows optional); unknown keys %s"
                           % (where, sorted(unknown)))
    out = {"table": _oid(t["table"], where + ".table"),
           "type": _int(t["type"], 1, 2 ** 31 - 1, where + ".type"),
           "value": _int(t["value"], 1, 2 ** 31 - 1, where + ".value"),
           "rows": _int(t.get("rows", 64), 1, MAX_TABLE_ROWS, where + ".rows"),
           "map": _mapping(t["map"], where + ".map", _type_range)}
    if out["type"] == out["value"]:
        raise ProfileSourceError("%s: type and value are the same column" % where)
    return out


def _blob_id(x, where):
    return _int(x, 0, 254, where + " id")


def _counter_blob(b, where):
    if not isinstance(b, dict):
        raise ProfileSourceError("%s: a blob is {oid, format, map}" % where)
    unknown = set(b) - BLOB_KEYS
    if unknown or not {"oid", "map"} <= set(b):
        raise ProfileSourceError("%s: needs oid, map (format optional); unknown keys %s" % (where, sorted(unknown)))
    fmt = b.get("format", "tlv8")
    if fmt not in BLOB_FORMATS:
        raise ProfileSourceError("%s.format: one of %s" % (where, BLOB_FORMATS))
    return {"oid": _oid(b["oid"], where + ".oid"), "format": fmt, "map": _mapping(b["map"], where + ".map", _blob_id)}


WEB_FIELDS = ("serial", "firmware", "model") + tuple("counters." + k for k in COUNTER_KEYS)
WEB_PAGE_KEYS = {"path", "scheme", "port", "fields"}
WEB_RULE_KEYS = {"after", "within", "re"}
MAX_WEB_PAGES = 4
# Regular expression syntax that MicroPython's re (re1.5) and CPython's read alike: no
# (?...) groups (named, non-capturing, lookaround, flags), no {m,n} counts, no backreferences.
RE_REFUSED = (("(?", "(?...) groups"), ("{", "{m,n} counts"), ("}", "{m,n} counts"), ("\\b", "\\b"),
              ("\\B", "\\B"), ("\\A", "\\A"), ("\\Z", "\\Z"))


def _web_pattern(pat, where):
    return _pattern(pat, where, 1)


def _pattern(pat, where, groups):
    """A pattern the box's re reads as CPython's does; `groups` 1: one group, the value
    (None: any number)."""
    if not isinstance(pat, str) or not pat or len(pat) > 200:
        raise ProfileSourceError("%s.re: expected a pattern of 1-200 characters" % where)
    if not pat.isascii():
        raise ProfileSourceError("%s.re: only ASCII patterns" % where)
    for bad, what in RE_REFUSED:
        if bad in pat:
            raise ProfileSourceError("%s.re: %s are not understood by the box's re" % (where, what))
    if re.search(r"\\[0-9]", pat):
        raise ProfileSourceError("%s.re: no backreferences" % where)
    try:
        rx = re.compile(pat)
    except re.error as e:
        raise ProfileSourceError("%s.re: %s" % (where, e))
    if groups == 1 and rx.groups != 1:
        raise ProfileSourceError("%s.re: needs exactly one group (the value), has %d" % (where, rx.groups))
    return pat


def _web_rule(rule, where):
    if isinstance(rule, str):
        rule = {"after": rule}
    if not isinstance(rule, dict):
        raise ProfileSourceError("%s: a rule is a marker string, {after, within, re} or {sum: [...]}" % where)
    unknown = set(rule) - WEB_RULE_KEYS
    if unknown:
        raise ProfileSourceError("%s: unknown keys %s" % (where, sorted(unknown)))
    after = rule.get("after")
    if not isinstance(after, str) or not after or len(after) > 200:
        raise ProfileSourceError("%s.after: expected a marker of 1-200 characters" % where)
    out = {"after": after}
    if "within" in rule:
        w = rule["within"]
        if not isinstance(w, int) or isinstance(w, bool) or not 1 <= w <= 2000:
            raise ProfileSourceError("%s.within: expected an integer 1-2000" % where)
        out["within"] = w
    if "re" in rule:
        out["re"] = _web_pattern(rule["re"], where)
    return out


def _web_sum(name, rule, fields, where):
    """{sum: [FIELD, ...]}: a counter that is the sum of other counters of the same page.
    Compiled with the parts' rules inline, so the box can judge it even when SNMP already
    gave some parts (and the page is read for the sum alone)."""
    if set(rule) != {"sum"}:
        raise ProfileSourceError("%s: a sum rule has only 'sum'" % where)
    if not name.startswith("counters."):
        raise ProfileSourceError("%s: only a counter can be a sum" % where)
    parts = rule["sum"]
    if not isinstance(parts, list) or not 2 <= len(parts) <= 4 or len(set(map(str, parts))) != len(parts):
        raise ProfileSourceError("%s.sum: expected a list of 2-4 different counters of this page" % where)
    out = []
    for part in parts:
        other = fields.get(part) if isinstance(part, str) else None
        if not isinstance(part, str) or not part.startswith("counters.") or other is None or part == name:
            raise ProfileSourceError("%s.sum: %r is not another counter of this page" % (where, part))
        if isinstance(other, dict) and "sum" in other:
            raise ProfileSourceError("%s.sum: %s is itself a sum" % (where, part))
        out.append(_web_rule(other, "%s.sum.%s" % (where, part)))
    return {"sum": out}


def _web_field(name, rule, fields, where):
    if isinstance(rule, dict) and "sum" in rule:
        return _web_sum(name, rule, fields, where)
    return _web_rule(rule, where)


def _web(pages, where):
    if not isinstance(pages, list) or not 1 <= len(pages) <= MAX_WEB_PAGES:
        raise ProfileSourceError("%s: expected a list of 1-%d pages" % (where, MAX_WEB_PAGES))
    out = []
    for i, page in enumerate(pages):
        w = "%s[%d]" % (where, i)
        if not isinstance(page, dict):
            raise ProfileSourceError("%s: a page is a mapping {path, scheme, port, fields}" % w)
        unknown = set(page) - WEB_PAGE_KEYS
        if unknown:
            raise ProfileSourceError("%s: unknown keys %s" % (w, sorted(unknown)))
        path = page.get("path")
        if not isinstance(path, str) or not path.startswith("/") or len(path) > 200 or \
                any(c <= " " or c > "~" for c in path):
            raise ProfileSourceError("%s.path: expected an absolute path (/...) of printable ASCII" % w)
        scheme = page.get("scheme", "http")
        if scheme not in ("http", "https"):
            raise ProfileSourceError("%s.scheme: http or https" % w)
        p = page.get("port", 443 if scheme == "https" else 80)
        if not isinstance(p, int) or isinstance(p, bool) or not 0 < p < 65536:
            raise ProfileSourceError("%s.port: expected a TCP port" % w)
        fields = page.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise ProfileSourceError("%s.fields: expected a mapping field -> rule" % w)
        bad = set(fields) - set(WEB_FIELDS)
        if bad:
            raise ProfileSourceError("%s.fields: unknown fields %s (one of %s)"
                                     % (w, sorted(bad), ", ".join(WEB_FIELDS)))
        out.append({"path": path, "scheme": scheme, "port": p,
                    "fields": {k: _web_field(k, v, fields, "%s.fields.%s" % (w, k)) for k, v in fields.items()}})
    return out


def compile_profile(data, where):
    if not isinstance(data, dict):
        raise ProfileSourceError("%s: expected a mapping" % where)
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ProfileSourceError("%s: unknown keys %s" % (where, sorted(unknown)))
    if not isinstance(data.get("vendor"), str) or not data["vendor"].strip():
        raise ProfileSourceError("%s: vendor is required" % where)
    out = {"vendor": data["vendor"].strip()}
    ents = data.get("enterprises", [])
    if not isinstance(ents, list) or not all(isinstance(e, int) and e > 0 for e in ents):
        raise ProfileSourceError("%s.enterprises: expected a list of positive integers" % where)
    out["enterprises"] = ents
    out["descr"] = _strings(data.get("descr", []), where + ".descr")
    if not ents and not out["descr"]:
        raise ProfileSourceError("%s: needs enterprises or descr to ever match" % where)
    for name in TEXT_RULES:
        if name in data:
            if not isinstance(data[name], list):
                raise ProfileSourceError("%s.%s: expected a list of sources" % (where, name))
            out[name] = [_text_source(s, "%s.%s[%d]" % (where, name, i)) for i, s in enumerate(data[name])]
    for k in ("model_prefixes", "model_suffixes", "mfp_models"):
        if k in data:
            out[k] = _strings(data[k], where + "." + k)
    if "model_replace" in data:
        rep = data["model_replace"]
        if not isinstance(rep, list) or not all(isinstance(p, list) and len(p) == 2 and
                                                all(isinstance(x, str) for x in p) and p[0] for p in rep):
            raise ProfileSourceError("%s.model_replace: expected a list of [old, new] pairs" % where)
        out["model_replace"] = rep
    if "counters" in data:
        c = data["counters"]
        if not isinstance(c, dict):
            raise ProfileSourceError("%s.counters: expected a mapping" % where)
        bad = set(c) - set(COUNTER_KEYS) - {"vendor", "tables", "blobs"}
        if bad:
            raise ProfileSourceError("%s.counters: unknown counters %s (vendor ones go under vendor:)"
                                     % (where, sorted(bad)))
        cc = {k: _counter_source(c[k], "%s.counters.%s" % (where, k)) for k in COUNTER_KEYS if k in c}
        if "vendor" in c:
            if not isinstance(c["vendor"], dict):
                raise ProfileSourceError("%s.counters.vendor: expected a mapping" % where)
            cc["vendor"] = {str(n): _counter_source(s, "%s.counters.vendor.%s" % (where, n))
                            for n, s in c["vendor"].items()}
        if "tables" in c:
            cc["tables"] = _list_of(c["tables"], "%s.counters.tables" % where, _counter_table)
        if "blobs" in c:
            cc["blobs"] = _list_of(c["blobs"], "%s.counters.blobs" % where, _counter_blob)
        out["counters"] = cc
    if "supply_special" in data:
        sp = data["supply_special"]
        if not isinstance(sp, dict):
            raise ProfileSourceError("%s.supply_special: expected a mapping level -> state" % where)
        pairs = []
        for k, v in sp.items():
            try:
                level = int(k)
            except (TypeError, ValueError):
                raise ProfileSourceError("%s.supply_special: %r is not an integer level" % (where, k))
            if v not in STATES:
                raise ProfileSourceError("%s.supply_special: state %r not one of %s" % (where, v, STATES))
            pairs.append([level, v])
        out["supply_special"] = pairs
    if "low_percent" in data:
        lp = data["low_percent"]
        if not isinstance(lp, int) or not 0 <= lp <= 100:
            raise ProfileSourceError("%s.low_percent: expected an integer 0-100" % where)
        out["low_percent"] = lp
    _shape(data, out, where)
    if "extra_agent" in data:
        ea = data["extra_agent"]
        if not isinstance(ea, dict) or set(ea) - {"port", "any_source_port"} or "port" not in ea:
            raise ProfileSourceError("%s.extra_agent: expected {port: N, any_source_port: true|false}" % where)
        if not isinstance(ea["port"], int) or isinstance(ea["port"], bool) or not 0 < ea["port"] < 65536:
            raise ProfileSourceError("%s.extra_agent.port: expected a UDP port 1-65535" % where)
        if not isinstance(ea.get("any_source_port", False), bool):
            raise ProfileSourceError("%s.extra_agent.any_source_port: expected true or false" % where)
        out["extra_agent"] = {"port": ea["port"], "any_source_port": ea.get("any_source_port", False)}
    if "web" in data:
        out["web"] = _web(data["web"], where + ".web")
    return out


def _shape(data, out, where):
    """The keys that describe the device's build: technology, typology, model_rules, duplex_words."""
    if "technology" in data:
        if data["technology"] not in TECHNOLOGIES:
            raise ProfileSourceError("%s.technology: one of %s" % (where, TECHNOLOGIES))
        out["technology"] = data["technology"]
    if "typology" in data:
        if data["typology"] not in ("mfp", "printer"):
            raise ProfileSourceError("%s.typology: mfp or printer" % where)
        out["typology"] = data["typology"]
    if "model_rules" in data:
        out["model_rules"] = _model_rules(data["model_rules"], where + ".model_rules")
    if "duplex_words" in data:
        out["duplex_words"] = _strings(data["duplex_words"], where + ".duplex_words")


def compile_dir(directory=PROFILES_DIR):
    """Every *.yaml of `directory` -> the compiled object (a dict)."""
    files = sorted(glob.glob(os.path.join(directory, "*.yaml")))
    if not files:
        raise ProfileSourceError("no *.yaml profiles in %s" % directory)
    profiles, vendors = [], {}
    for path in files:
        name = os.path.basename(path)
        try:
            with open(path) as f:
                data = yaml.safe_load(f)
        except OSError as e:
            raise ProfileSourceError(os_problem(e))
        except yaml.YAMLError as e:
            raise ProfileSourceError(yaml_problem(path, e), hint="fix the YAML (docs/profiles.md describes a profile)")
        p = compile_profile(data, name)
        if p["vendor"] in vendors:
            raise ProfileSourceError("%s: vendor %s already defined in %s" % (name, p["vendor"], vendors[p["vendor"]]))
        vendors[p["vendor"]] = name
        profiles.append(p)
    profiles.sort(key=lambda p: p["vendor"])
    check_patterns_on_micropython(profiles)
    return {"format": FORMAT, "profiles": profiles}


# Run by the box's own re: its backtracking gives up ("regex too complex") on patterns
# CPython takes, long alternations above all; the sample texts are as long as a sysDescr.
_MP_CHECK = r"""
import re, sys
bad = []
samples = ("x" * 200, "Model 1234 Series Rev.01.23 : " * 6)
for pat in sys.stdin.read().split("\n"):
    for s in samples:
        try:
            re.search(pat, s)
        except ValueError:
            bad.append(pat)
            break
print("\n".join(bad))
"""


def _patterns(p):
    for name in TEXT_RULES:
        for src in p.get(name, ()):
            if "re" in src:
                yield src["re"]
    for rule in p.get("model_rules", ()):
        yield rule["re"]
    for page in p.get("web", ()):
        for rule in page["fields"].values():
            for r in rule.get("sum", [rule]):
                if "re" in r:
                    yield r["re"]


def check_patterns_on_micropython(profiles, micropython=None):
    """Refuse the patterns MicroPython's re cannot run; skipped (None) where no micropython
    is installed next to this Python, else the number of patterns checked."""
    import subprocess
    import sys
    mp = micropython or os.path.join(os.path.dirname(sys.executable), "micropython")
    if not os.path.exists(mp):
        return None
    pats = sorted({pat for p in profiles for pat in _patterns(p)})
    if not pats:
        return 0
    r = subprocess.run([mp, "-c", _MP_CHECK], input="\n".join(pats), capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise ProfileSourceError("micropython could not check the profiles' patterns: %s" % r.stderr.strip())
    bad = [x for x in r.stdout.split("\n") if x]
    if bad:
        raise ProfileSourceError("patterns too complex for the box's re (split them into several rules): %s"
                                 % "; ".join(bad))
    return len(pats)


def dumps(compiled):
    """The file: a header line {"format":1,"profiles":N}, then one line per profile
    (compact JSON, keys sorted), so the box can index it and read one vendor at a time."""
    lines = [json.dumps({"format": compiled["format"], "profiles": len(compiled["profiles"])},
                        separators=(",", ":"), sort_keys=True)]
    for p in compiled["profiles"]:
        lines.append(json.dumps(p, separators=(",", ":"), sort_keys=True))
    return ("\n".join(lines) + "\n").encode()


def compile_to(output, directory=PROFILES_DIR):
    data = dumps(compile_dir(directory))
    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    # Whole or not at all: builds running at once (make sim beside make test) share build/.
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".profiles-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return data
