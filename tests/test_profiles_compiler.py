"""fbtool profiles: the YAML profiles compile, the documented vector holds, mistakes are named."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    assert lib.vendors() == ["Example"] and lib.index[0][3] == len(head) + 1
    p = lib.get("Example")
    assert p == json.loads(line)
    assert p["supply_special"] == [[-100, "low"], [-5, "empty"]]
    assert p["model"][2] == {"oid": "1.3.6.1.4.1.99999.1.7.0", "ieee1284": "MDL"}


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
])
def test_mistakes_are_named(tmp_path, text, needle):
    (tmp_path / "x.yaml").write_text(text)
    with pytest.raises(compiler.ProfileError) as e:
        compiler.compile_dir(str(tmp_path))
    assert needle in str(e.value) and "x.yaml" in str(e.value)


def test_canon_profile_asks_for_its_extra_agent():
    got = {p["vendor"]: p for p in compiler.compile_dir()["profiles"]}
    assert got["Canon"]["extra_agent"] == {"port": 47545, "any_source_port": True}
    assert all("extra_agent" not in p for v, p in got.items() if v != "Canon")


def test_duplicate_vendor_refused(tmp_path):
    for n in ("a", "b"):
        (tmp_path / (n + ".yaml")).write_text("vendor: X\nenterprises: [1]\n")
    with pytest.raises(compiler.ProfileError, match="already defined in a.yaml"):
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
