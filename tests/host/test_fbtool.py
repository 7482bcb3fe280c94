"""fbtool: image build/parse, sim flash layout, booting from flash, command-line errors."""
import json
import os
import re
import subprocess
import sys

import pytest

from fbtool import flash, image, paths

BIN = os.path.dirname(sys.executable)
FBTOOL = os.path.join(BIN, "fbtool")


def fbtool(*args):
    return subprocess.run([FBTOOL] + list(args), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("img") / "fw.fbi"
    r = fbtool("build", "-o", str(out))
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


def test_image_holds_bytecode_of_every_module(built):
    manifest, files = image.parse(built)
    names = {p for p, _ in files}
    srcs = {"fleetbox/%s.mpy" % n[:-3]
            for n in os.listdir(os.path.join(paths.FIRMWARE, "fleetbox")) if n.endswith(".py")}
    assert srcs | {"board.mpy", "hal.mpy", "profiles.json"} == names
    assert all(d[:1] == b"M" for p, d in files if p.endswith(".mpy"))  # .mpy magic, not source
    # the vendor profiles travel as their own data file (updatable alone), compiled
    prof = dict(files)["profiles.json"]
    assert prof.startswith(b'{"format":1,"profiles":')
    assert manifest["board"] == "sim" and manifest["version"] == image.firmware_version()


@pytest.mark.parametrize("damage", ["magic", "digest", "file", "truncate"])
def test_damaged_images_are_refused_with_a_reason(built, damage):
    data = bytearray(built)
    if damage == "magic":
        data[0:4] = b"XXXX"
    elif damage == "digest":
        data[-1] ^= 1
    elif damage == "file":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[:20]
    with pytest.raises(image.ImageError) as e:
        image.parse(bytes(data))
    assert str(e.value)


def test_partition_table_matches_the_documented_vector():
    doc = open(os.path.join(paths.ROOT, "docs", "flash-layout.md")).read()
    block = doc.split("Test vector")[1].split("```")[1]
    hexed = "".join(re.sub(r"\(.*?\)", "", block).split())
    assert flash.partition_table(flash.load_board("sim")).hex() == hexed


def test_flash_writes_mountable_partitions(built, tmp_path):
    fw = tmp_path / "fw.fbi"
    fw.write_bytes(built)
    ident = tmp_path / "id.json"
    assert fbtool("identity", "T-1", "-o", str(ident), "--manifest", str(tmp_path / "m.json")).returncode == 0
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"targets": ["127.0.0.1"]}))
    img = tmp_path / "flash.img"
    r = fbtool("flash", "--sim", str(img), "--image", str(fw), "--identity", str(ident), "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    board = flash.load_board("sim")
    assert img.stat().st_size == board["flash"]["size"]
    bs = board["flash"]["block_size"]
    slot = flash.read_lfs(flash.read_partition(str(img), board, "slot_a"), bs)
    assert "main.mpy" in slot.listdir("fleetbox")
    ident_fs = flash.read_lfs(flash.read_partition(str(img), board, "identity"), bs)
    assert json.loads(ident_fs.open("identity.json").read())["serial"] == "T-1"
    manifest = json.load(open(tmp_path / "m.json"))
    assert manifest["T-1"]["1"] == json.load(open(ident))["device_key"]
    # Reflashing the app keeps the box's data partition.
    data = flash.read_lfs(flash.read_partition(str(img), board, "data"), bs)
    with data.open("spool-marker", "w") as f:
        f.write("x")
    with open(img, "r+b") as f:
        part = [p for p in board["flash"]["partitions"] if p["name"] == "data"][0]
        f.seek(part["offset"])
        f.write(bytes(data.context.buffer))
    assert fbtool("flash", "--sim", str(img), "--image", str(fw)).returncode == 0
    data = flash.read_lfs(flash.read_partition(str(img), board, "data"), bs)
    assert "spool-marker" in data.listdir("/")


def test_box_boots_from_flash_not_from_source(built, tmp_path):
    """With a bad config the app starts (from slot A bytecode), names the problem and stops."""
    fw = tmp_path / "fw.fbi"
    fw.write_bytes(built)
    ident = tmp_path / "id.json"
    fbtool("identity", "T-2", "-o", str(ident))
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"targets": ["300.1.1.1"]}))
    img = tmp_path / "flash.img"
    assert fbtool("flash", "--sim", str(img), "--image", str(fw), "--identity", str(ident),
                  "--config", str(cfg)).returncode == 0
    r = subprocess.run([paths.micropython(), os.path.join(paths.ROOT, "board", "sim", "rom.py"), str(img)],
                       capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert "starting %s from slot_a" % image.firmware_version() in r.stdout
    assert "cannot start: targets" in r.stdout
    assert r.returncode == 78


def test_rom_refuses_a_flash_without_partition_table(tmp_path):
    img = tmp_path / "blank.img"
    img.write_bytes(b"\xff" * 8192)
    r = subprocess.run([paths.micropython(), os.path.join(paths.ROOT, "board", "sim", "rom.py"), str(img)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "no fleetbox partition table" in r.stdout + r.stderr


@pytest.mark.parametrize("args,words", [
    (["scan", "10.0.0.300"], "not an IPv4 address"),
    (["scan", "10.0.0.9-3"], "backwards"),
    (["scan"], "required"),
    (["scan", "127.0.0.1", "--snmp-version", "9"], "invalid choice"),
    (["flash", "--sim", "/tmp/x.img", "--image", "/nonexistent.fbi"], "cannot read image"),
])
def test_bad_arguments_fail_clearly(args, words):
    r = fbtool(*args)
    assert r.returncode != 0
    assert words in r.stderr, r.stderr


def test_scan_of_silent_address_succeeds_empty():
    r = fbtool("scan", "127.0.0.1:9", "--json", "--timeout-ms", "200", "--retries", "0")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


def test_scan_takes_many_targets():
    """Hundreds of target specs reach the collector (they travel on stdin, not argv)."""
    specs = ["127.0.9.%d:9" % i for i in range(1, 255)]
    r = fbtool("scan", *specs, "--json", "--timeout-ms", "100", "--retries", "0")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
