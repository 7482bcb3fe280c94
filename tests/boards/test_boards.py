"""Boards: every board.yaml lays out a flash, esp32-poe builds and flashes, docs match the HAL."""
import hashlib
import os
import re
import struct
import subprocess
import sys

import pytest
import yaml

from fbtool import flash, paths

sys.path[:0] = [os.path.join(paths.ROOT, "board")]
import hal  # noqa: E402

FBTOOL = os.path.join(os.path.dirname(sys.executable), "fbtool")
BOARDS = sorted(n for n in os.listdir(paths.BOARDS) if os.path.isfile(os.path.join(paths.BOARDS, n, "board.yaml")))
DOC = open(os.path.join(paths.ROOT, "docs", "boards.md")).read()


def fbtool(*args):
    return subprocess.run([FBTOOL] + list(args), capture_output=True, text=True, timeout=300)


def test_there_is_a_real_board_beside_the_sim():
    assert {"sim", "esp32-poe"} <= set(BOARDS)


@pytest.mark.parametrize("name", BOARDS)
def test_board_yaml_lays_out_every_partition_the_loader_needs(name):
    board = flash.load_board(name)
    for role in ("slot_a", "slot_b", "identity", "data"):
        assert flash._part(board, role)["type"] == "lfs"
    assert flash.loader_partition(board)["type"] == "lfs"
    assert len(flash.partition_table(board)) <= flash._part(board, "ptable")["size"]
    # The board's code states the same watchdog as its board.yaml.
    src = open(os.path.join(paths.BOARDS, name, "board.py")).read()
    assert int(re.search(r"^WATCHDOG_S = (\d+)", src, re.M).group(1)) == board["hardware"]["watchdog_s"]
    # ... and the same device memory bound, which the board's class hands the firmware
    assert int(re.search(r"^DEVICE_MEMORY = (\d+)", src, re.M).group(1)) == board["hardware"]["device_memory"]
    assert re.search(r"^    device_memory = DEVICE_MEMORY$", src, re.M)


def test_bad_board_descriptions_are_refused(tmp_path, monkeypatch):
    good = yaml.safe_load(open(os.path.join(paths.BOARDS, "esp32-poe", "board.yaml")))
    cases = {
        "overlap": lambda b: b["flash"]["partitions"][-1].update(offset=b["flash"]["partitions"][-2]["offset"]),
        "app alignment": lambda b: [p.update(offset=p["offset"] + 0x1000, size=p["size"] - 0x1000)
                                    for p in b["flash"]["partitions"] if p["name"] == "factory"],
        "no data": lambda b: b["flash"].update(partitions=[p for p in b["flash"]["partitions"] if p["name"] != "data"]),
        "table kind": lambda b: b["flash"].update(table="gpt"),
    }
    for what, damage in cases.items():
        b = yaml.safe_load(yaml.safe_dump(good))
        damage(b)
        d = tmp_path / what.replace(" ", "_")
        d.mkdir()
        (d / "board.yaml").write_text(yaml.safe_dump(b))
        monkeypatch.setattr(paths, "BOARDS", str(tmp_path))
        with pytest.raises(flash.FlashError):
            flash.load_board(d.name)


def _parse_idf(table):
    """Entries of an ESP-IDF partition table, checked as the ESP32 bootloader checks them."""
    out, pos = [], 0
    while True:
        ent = table[pos:pos + 32]
        if ent[:2] == b"\xeb\xeb":
            assert ent[2:16] == b"\xff" * 14 and table[pos + 16:pos + 32] == hashlib.md5(table[:pos]).digest()
            assert set(table[pos + 32:0xC00]) == {0xFF}
            return out
        magic, typ, sub, off, size, label, flags = struct.unpack("<2sBBII16sI", ent)
        assert magic == b"\xaa\x50" and flags == 0
        out.append((label.rstrip(b"\0").decode(), typ, sub, off, size))
        pos += 32


def test_esp32_poe_builds_and_flashes_a_raw_image(tmp_path):
    fw, img = tmp_path / "fw.fbi", tmp_path / "flash.bin"
    r = fbtool("build", "--board", "esp32-poe", "-o", str(fw))
    assert r.returncode == 0, r.stderr          # board.py and rom.py compiled with mpy-cross
    micropython = os.urandom(0x20000)   # stands in for MicroPython's ESP32_GENERIC image
    rt = tmp_path / "mp.bin"
    rt.write_bytes(micropython)
    r = fbtool("flash", "--board", "esp32-poe", "--raw", str(img), "--image", str(fw), "--micropython", str(rt))
    assert r.returncode == 0, r.stderr
    board = flash.load_board("esp32-poe")
    data = img.read_bytes()
    assert len(data) == board["flash"]["size"]
    assert data[0x1000:0x2000] == micropython[:0x1000]           # the runtime at the bootloader's offset
    assert data[0x10000:0x10000 + 100] == micropython[0xF000:0xF000 + 100]
    entries = _parse_idf(data[0x8000:0x8C00])
    want = [(p["name"], flash.IDF_TYPES[p["idf"][0]], flash.IDF_SUBTYPES[p["idf"][0]][p["idf"][1]],
             p["offset"], p["size"])
            for p in board["flash"]["partitions"] if "idf" in p]
    assert entries == want
    bs = board["flash"]["block_size"]
    vfs = flash.read_lfs(flash.read_partition(str(img), board, "vfs"), bs)
    assert sorted(vfs.listdir("/")) == ["boot.mpy", "bootstate.mpy", "main.py", "rom.mpy"]
    assert vfs.open("main.py").read() == "import rom\nrom.run()\n"
    slot = flash.read_lfs(flash.read_partition(str(img), board, "slot_a"), bs)
    assert "board.mpy" in slot.listdir("/")


def test_esp_idf_table_matches_the_documented_vector():
    block = DOC.split("ESP-IDF table test vector")[1].split("```")[1]
    hexed = "".join(re.sub(r"\(.*?\)", "", block).split())
    table = flash.esp_idf_table(flash.load_board("esp32-poe"))
    assert table[:len(hexed) // 2].hex() == hexed and set(table[len(hexed) // 2:]) == {0xFF}


def test_runtime_images_that_do_not_fit_are_refused(tmp_path):
    fw = tmp_path / "fw.fbi"
    assert fbtool("build", "--board", "esp32-poe", "-o", str(fw)).returncode == 0
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * 0x200000)
    r = fbtool("flash", "--board", "esp32-poe", "--raw", str(tmp_path / "f.bin"), "--image", str(fw),
               "--micropython", str(big))
    assert r.returncode != 0 and "overruns the factory partition" in r.stderr
    r = fbtool("flash", "--board", "esp32-poe", "--sim", str(tmp_path / "f.bin"), "--image", str(fw))
    assert r.returncode != 0 and "--raw" in r.stderr


def test_led_blink_codes_are_documented_as_the_hal_defines_them():
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| `([01]{16})` \|", DOC, re.M))
    assert rows == hal.LED_BLINK
    assert set(hal.LED_BLINK) == set(hal.LED_PATTERNS) and len(set(hal.LED_BLINK.values())) == len(hal.LED_BLINK)
