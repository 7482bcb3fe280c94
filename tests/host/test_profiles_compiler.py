"""fbtool profiles: the YAML profiles compile, the documented vector holds, mistakes are named."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "host-tools"))

from fbtool import image, profiles as compiler  # noqa: E402
from fleetbox import profiles  # noqa: E402

VECTORS = os.path.join(ROOT, "docs", "vectors")
MAJORS = {"HP", "Canon", "Kyocera", "Ricoh", "Xerox", "Brother", "Lexmark", "Konica Minolta", "Sharp", "Epson"}


def test_repository_profiles_compile_and_load(tmp_path):
    out = str(tmp_path / "p.json")
    data = compiler.compile_to(out)
    plist = profiles.load([out])
    vendors = set(plist.vendors())
    assert MAJORS <= vendors and {"OKI", "Samsung", "Toshiba", "Dell", "Zebra"} <= vendors
    assert data == compiler.dumps(compiler.compile_dir())      # deterministic
    assert len(data) < 16384


def test_documented_vector_compiles_byte_for_byte():
    got = compiler.dumps(compiler.compile_dir(os.path.join(VECTORS, "profiles")))
    path = os.path.join(VECTORS, "profiles-example.json")
    with open(path, "rb") as f:
        assert got == f.read()
    head, line = got.decode().splitlines()
    assert json.loads(head) == {"format": 1, "profiles": 1}
    lib = profiles.load([path])
    assert lib.vendors() == ["Example"] and lib.offsets[0] == len(head) + 1
    p = lib.get("Example")
    assert p == json.loads(line)
    assert p["supply_special"] == [[-100, "low"], [-5, "empty"]]
    assert p["model"][2] == {"oid": "1.3.6.1.4.1.99999.1.7.0", "ieee1284": "MDL"}


TABLE = "vendor: X\nenterprises: [1]\ncounters: {tables: [{table: 1.3.6.1.4.1.1.5, type: 2, value: 9, %s}]}\n"
BLOB = "vendor: X\nenterprises: [1]\ncounters: {blobs: [{oid: 1.3.6.1.4.1.1.6.0, %s}]}\n"


def test_counter_tables_vector_compiles_byte_for_byte():
    got = compiler.dumps(compiler.compile_dir(os.path.join(VECTORS, "counter-tables")))
    with open(os.path.join(VECTORS, "counter-tables.json"), "rb") as f:
        assert got == f.read()
    c = json.loads(got.decode().splitlines()[1])["counters"]
    assert c["tables"][0]["map"]["vendor.copy_colour"] == [[201, 201], [202, 203]]
    assert c["blobs"][0] == {"oid": "1.3.6.1.4.1.99999.5.10.0", "format": "tlv8",
                             "map": {"total": [0], "mono": [1], "color": [2], "vendor.cyan": [18],
                                     "vendor.cmy": [18, 19, 20]}}


@pytest.mark.parametrize("text,needle", [
    ("vendor: X\nenterprises: [1]\nmodle: [hr]\n", "unknown keys ['modle']"),
    ("enterprises: [1]\n", "vendor is required"),
    ("vendor: X\n", "needs enterprises or descr"),
    ("vendor: X\nenterprises: [1]\nserial: [2.5.4.3]\n", "not a dotted OID under 1.3.6.1"),
    ("vendor: X\nenterprises: [1]\nmodel: [{oid: 1.3.6.1.2, hr: true}]\n", "exactly one of oid, hr, sysdescr"),
    ("vendor: X\nenterprises: [1]\ncounters: {pages: 1.3.6.1.4.1.1.1}\n", "unknown counters ['pages']"),
    ("vendor: X\nenterprises: [1]\ncounters: {mono: {sum: [1.3.6.1.4.1.1]}}\n", "at least two OIDs"),
    ("vendor: X\nenterprises: [1]\nsupply_special: {-1: dusty}\n", "state 'dusty'"),
    ("vendor: X\nenterprises: [1]\nmodel: [\n", "x.yaml"),
    ("vendor: X\nenterprises: [1]\nextra_agent: {port: 70000}\n", "extra_agent.port"),
    ("vendor: X\nenterprises: [1]\nextra_agent: {port: 47545, any_port: true}\n", "extra_agent: expected"),
    ("vendor: X\nenterprises: [1]\nextra_agent: {port: 47545, any_source_port: 1}\n", "any_source_port"),
    (TABLE % "map: {pages: 10}", "is not a counter"),
    (TABLE % "map: {total: [ten]}", "not a type code or a range"),
    (TABLE % "map: {copy: ['203-200']}", "empty or out of"),
    (TABLE % "rows: 1000, map: {total: 10}", "rows: expected an integer 1-256"),
    (TABLE.replace("value: 9", "value: 2") % "map: {total: 10}", "same column"),
    (TABLE.replace("value: 9, ", "") % "map: {total: 10}", "needs table, type, value, map"),
    ("vendor: X\nenterprises: [1]\ncounters: {tables: []}\n", "tables: expected a list of 1-4"),
    (BLOB % "format: xml, map: {total: 0}", "format: one of"),
    (BLOB % "map: {total: 255}", "id: expected an integer 0-254"),
    (BLOB % "map: {total: []}", "expected at least one code"),
])
def test_mistakes_are_named(tmp_path, text, needle):
    (tmp_path / "x.yaml").write_text(text)
    with pytest.raises(compiler.ProfileSourceError) as e:
        compiler.compile_dir(str(tmp_path))
    assert needle in str(e.value) and "x.yaml" in str(e.value)


def test_canon_profile_asks_for_its_extra_agent():
    got = {p["vendor"]: p for p in compiler.compile_dir()["profiles"]}
    assert got["Canon"]["extra_agent"] == {"port": 47545, "any_source_port": True}
    assert all("extra_agent" not in p for v, p in got.items() if v != "Canon")


def test_duplicate_vendor_refused(tmp_path):
    for n in ("a", "b"):
        (tmp_path / (n + ".yaml")).write_text("vendor: X\nenterprises: [1]\n")
    with pytest.raises(compiler.ProfileSourceError, match="already defined in a.yaml"):
        compiler.compile_dir(str(tmp_path))


def test_cli_compile_and_image_carries_profiles(tmp_path):
    fbtool = os.path.join(os.path.dirname(sys.executable), "fbtool")
    out = tmp_path / "profiles.json"
    r = subprocess.run([fbtool, "profiles", "compile", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0 and "compiled" in r.stdout, r.stderr
    arcs = dict(image.app_sources("sim"))
    assert "profiles.json" in arcs
    with open(arcs["profiles.json"], "rb") as f:
        assert f.read() == out.read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.yaml").write_text("vendor: X\n")
    r = subprocess.run([fbtool, "profiles", "compile", "--source", str(bad), "-o", str(tmp_path / "y")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "x.yaml" in r.stderr
