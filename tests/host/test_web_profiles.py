"""Profiles' `web:` section (docs/profiles.md "Web pages"): the documented vector compiles byte
for byte, mistakes are named, and every pattern in profiles/ and the vector behaves the same
on MicroPython's re as on CPython's."""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "host-tools"))

from fbtool import profiles as compiler  # noqa: E402

VECTORS = os.path.join(ROOT, "docs", "vectors")
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")


def test_web_vector_compiles_byte_for_byte():
    got = compiler.dumps(compiler.compile_dir(os.path.join(VECTORS, "web-profile")))
    with open(os.path.join(VECTORS, "web-profile.json"), "rb") as f:
        assert got == f.read()
    p = json.loads(got.decode().splitlines()[1])
    assert p["web"][0]["scheme"] == "http" and p["web"][0]["port"] == 80       # defaults filled in
    assert p["web"][1] == {"path": "/info", "scheme": "https", "port": 8443,
                           "fields": {"model": {"after": '<h1 class="model">'}}}
    assert p["web"][0]["fields"]["counters.total"] == {"after": "<td>Total Impressions</td>"}


def test_repository_profiles_have_web_rules():
    c = compiler.compile_dir()
    web = {p["vendor"]: p["web"] for p in c["profiles"] if "web" in p}
    assert {"HP", "Brother", "Kyocera", "Ricoh"} <= set(web)
    assert web["HP"][0]["scheme"] == "https" and "counters.total" in web["HP"][0]["fields"]
    # Kyocera's total is the sum of CCRX's by-function counters, compiled with their rules inline
    ky = web["Kyocera"][0]["fields"]
    assert web["Kyocera"][0]["scheme"] == "https" and web["Kyocera"][0]["port"] == 443
    assert ky["counters.total"] == {"sum": [ky["counters.print"], ky["counters.copy"], ky["counters.fax"]]}
    assert web["Ricoh"][0]["scheme"] == "http" and "counters.total" in web["Ricoh"][0]["fields"]


def _profile(web):
    return {"vendor": "X", "enterprises": [1], "web": web}


BAD = [
    ({"path": "/a", "fields": {"counters.bogus": "x"}}, "unknown fields"),
    ({"path": "a", "fields": {"serial": "x"}}, "absolute path"),
    ({"path": "/a b", "fields": {"serial": "x"}}, "absolute path"),
    ({"path": "/a", "scheme": "ftp", "fields": {"serial": "x"}}, "http or https"),
    ({"path": "/a", "port": 70000, "fields": {"serial": "x"}}, "TCP port"),
    ({"path": "/a", "fields": {}}, "fields"),
    ({"path": "/a", "fields": {"serial": {"after": ""}}}, "marker"),
    ({"path": "/a", "fields": {"serial": {"after": "x", "within": 0}}}, "within"),
    ({"path": "/a", "fields": {"serial": {"after": "x", "before": "y"}}}, "unknown keys"),
    ({"path": "/a", "fields": {"serial": {"after": "x", "re": "(?P<v>a)"}}}, "(?...)"),
    ({"path": "/a", "fields": {"serial": {"after": "x", "re": "(?<=a)(b)"}}}, "(?...)"),
    ({"path": "/a", "fields": {"serial": {"after": "x", "re": "([0-9]{3})"}}}, "{m,n}"),
    ({"path": "/a", "fields": {"serial": {"after": "x", "re": "(a)(b)"}}}, "exactly one group"),
    ({"path": "/a", "fields": {"serial": {"after": "x", "re": "[0-9]+"}}}, "exactly one group"),
    ({"path": "/a", "fields": {"serial": {"after": "x", "re": "(a)\\1"}}}, "backreferences"),
    ({"path": "/a", "fields": {"serial": {"after": "x", "re": "(a"}}}, "re:"),
    ({"path": "/a", "fields": {"serial": {"after": "x", "re": "\\b(a)"}}}, "\\b"),
    ({"path": "/a", "extra": 1, "fields": {"serial": "x"}}, "unknown keys"),
    ({"path": "/a", "fields": {"counters.total": {"sum": ["counters.copy"]}, "counters.copy": "x"}}, "2-4 different"),
    ({"path": "/a", "fields": {"counters.total": {"sum": ["counters.copy", "counters.copy"]}, "counters.copy": "x"}},
     "2-4 different"),
    ({"path": "/a", "fields": {"counters.total": {"sum": "counters.copy"}}}, "2-4 different"),
    ({"path": "/a", "fields": {"counters.total": {"sum": ["counters.copy", "counters.fax"]}, "counters.copy": "x"}},
     "not another counter"),
    ({"path": "/a", "fields": {"counters.total": {"sum": ["counters.total", "counters.copy"]}, "counters.copy": "x"}},
     "not another counter"),
    ({"path": "/a", "fields": {"counters.total": {"sum": ["serial", "counters.copy"]}, "counters.copy": "x",
                               "serial": "y"}}, "not another counter"),
    ({"path": "/a", "fields": {"serial": {"sum": ["counters.copy", "counters.fax"]}, "counters.copy": "x",
                               "counters.fax": "y"}}, "only a counter"),
    ({"path": "/a", "fields": {"counters.total": {"sum": ["counters.copy", "counters.mono"]}, "counters.copy": "x",
                               "counters.mono": {"sum": ["counters.copy", "counters.fax"]}, "counters.fax": "y"}},
     "itself a sum"),
    ({"path": "/a", "fields": {"counters.total": {"sum": ["counters.copy", "counters.fax"], "after": "x"},
                               "counters.copy": "x", "counters.fax": "y"}}, "only 'sum'"),
    ({"path": "/a", "fields": {"counters.total": {"sum": ["counters.copy", "counters.fax"]}, "counters.copy": "x",
                               "counters.fax": {"after": "y", "within": 0}}}, "within"),
]


@pytest.mark.parametrize("page,words", BAD)
def test_mistakes_are_named(page, words):
    with pytest.raises(compiler.ProfileSourceError) as e:
        compiler.compile_profile(_profile([page]), "x.yaml")
    assert words in str(e.value) and "x.yaml.web[0]" in str(e.value)


def test_too_many_pages():
    with pytest.raises(compiler.ProfileSourceError, match="1-4 pages"):
        compiler.compile_profile(_profile([{"path": "/a", "fields": {"serial": "x"}}] * 5), "x.yaml")


SAMPLES = ["", "Ver.1.05a", " = parseInt('4021',10);", "abc 123 def", "\n\nZC\n", "Serial: E7-8 x",
           "''", "Ver.", "\u00e9t\u00e9 12"]


def test_patterns_behave_alike_on_micropython(tmp_path):
    pats = set()
    for d in (None, os.path.join(VECTORS, "web-profile")):
        for p in compiler.compile_dir(d)["profiles"] if d else compiler.compile_dir()["profiles"]:
            for page in p.get("web", ()):
                for rule in page["fields"].values():
                    if "re" in rule:
                        pats.add(rule["re"])
    # and the syntax docs/profiles.md promises
    pats |= {"([0-9]+)", "\\s*([^\\s<]+)", "([A-Z][A-Z0-9-]*)", "Ver\\.([0-9.]+)", "(.*?)[0-9]", "(.+?) ",
             "^(\\w+)", "([0-9]+)$", "(Ver|Serial)", "(\\d+)\\s*,", "x?(b.)", "[^a-z]*([a-z]+)"}
    pats = sorted(pats)
    expected = []
    for p in pats:
        for s in SAMPLES:
            m = re.search(p, s, re.ASCII)   # as fleetbox.web on CPython: \\w is ASCII, as on MicroPython
            expected.append(m.group(1) if m else None)
    script = tmp_path / "re_check.py"
    script.write_text("import re, json, sys\nd = json.loads(sys.stdin.readline())\nout = []\n"
                      "for p in d['pats']:\n    rx = re.compile(p)\n    for s in d['samples']:\n"
                      "        m = rx.search(s)\n        out.append(m.group(1) if m else None)\n"
                      "print(json.dumps(out))\n")
    r = subprocess.run([MICROPYTHON, str(script)], input=json.dumps({"pats": pats, "samples": SAMPLES}) + "\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    assert json.loads(r.stdout) == expected
