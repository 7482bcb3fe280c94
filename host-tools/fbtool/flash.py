"""Flash images: lay out a board's flash from its board.yaml (format: docs/flash-layout.md)."""
import binascii
import json
import os
import struct

import yaml
from littlefs import LittleFS

from . import image, paths

PT_MAGIC = b"FBPT"
PT_HEAD = "<4sBBHI"
PT_ENTRY = "<16sIIB3x"
PT_TYPES = {"table": 1, "lfs": 2, "raw": 3}


class FlashError(Exception):
    pass


def load_board(name):
    with open(os.path.join(paths.board_dir(name), "board.yaml")) as f:
        board = yaml.safe_load(f)
    fl = board["flash"]
    bs = fl["block_size"]
    end = 0
    for p in fl["partitions"]:
        if p["offset"] % bs or p["size"] % bs:
            raise FlashError("board %s: partition %s not aligned to %d" % (name, p["name"], bs))
        if p["offset"] < end:
            raise FlashError("board %s: partition %s overlaps the one before" % (name, p["name"]))
        end = p["offset"] + p["size"]
    if end > fl["size"]:
        raise FlashError("board %s: partitions exceed the %d-byte flash" % (name, fl["size"]))
    return board


def partition_table(board):
    fl = board["flash"]
    parts = fl["partitions"]
    head = struct.pack(PT_HEAD, PT_MAGIC, 1, len(parts), 0, fl["block_size"])
    body = b"".join(struct.pack(PT_ENTRY, p["name"].encode(), p["offset"], p["size"], PT_TYPES[p["type"]])
                    for p in parts)
    return head + body + struct.pack("<I", binascii.crc32(head + body) & 0xFFFFFFFF)


def lfs_partition(size, block_size, files=(), existing=None):
    """A LittleFS2 image of `size` bytes holding files {path: bytes}; `existing` keeps an old one's content."""
    count = size // block_size
    if existing is not None:
        fs = LittleFS(block_size=block_size, block_count=count, mount=False)
        fs.context.buffer = bytearray(existing)
        fs.mount()
    else:
        fs = LittleFS(block_size=block_size, block_count=count)
    for path, data in dict(files).items():
        d = os.path.dirname(path)
        if d:
            fs.makedirs(d, exist_ok=True)
        with fs.open(path, "wb") as f:
            f.write(data)
    return bytes(fs.context.buffer)


def read_lfs(buf, block_size):
    """Mount a LittleFS partition image read from flash (for inspection and tests)."""
    fs = LittleFS(block_size=block_size, block_count=len(buf) // block_size, mount=False)
    fs.context.buffer = bytearray(buf)
    fs.mount()
    return fs


def _part(board, name):
    for p in board["flash"]["partitions"]:
        if p["name"] == name:
            return p
    raise FlashError("board %s has no partition %r" % (board["name"], name))


def read_partition(flash_path, board, name):
    p = _part(board, name)
    with open(flash_path, "rb") as f:
        f.seek(p["offset"])
        return f.read(p["size"])


def write_sim(flash_path, app_image, board_name="sim", identity=None, config=None, erase=False):
    """Write loader + app (slot A) into a sim flash file, creating it (all 0xff) when new or erased.

    identity (dict) goes to the identity partition, config (dict) seeds the data partition;
    on an existing flash both are kept unless given.
    """
    board = load_board(board_name)
    manifest, files = image.parse(app_image)
    if manifest["board"] != board_name:
        raise FlashError("image is for board %r, not %r" % (manifest["board"], board_name))
    bs = board["flash"]["block_size"]
    fresh = erase or not os.path.exists(flash_path)
    if fresh:
        with open(flash_path, "wb") as f:
            f.write(b"\xff" * board["flash"]["size"])
    elif os.path.getsize(flash_path) != board["flash"]["size"]:
        raise FlashError("%s is not a %s flash image (size %d)" % (flash_path, board_name, os.path.getsize(flash_path)))
    loader = {arc: image.compile_mpy(src, arc[:-4] + ".py") for arc, src in image.loader_sources()}
    writes = {
        "ptable": partition_table(board),
        "loader": lfs_partition(_part(board, "loader")["size"], bs, loader),
        "slot_a": lfs_partition(_part(board, "slot_a")["size"], bs, files),
    }
    if fresh:
        writes["slot_b"] = lfs_partition(_part(board, "slot_b")["size"], bs)
    if identity is not None or fresh:
        ident = {"identity.json": json.dumps(identity or {}).encode()}
        writes["identity"] = lfs_partition(_part(board, "identity")["size"], bs, ident)
    if config is not None or fresh:
        data_files = {"config.json": json.dumps(config or {}).encode()}
        existing = None if fresh else read_partition(flash_path, board, "data")
        writes["data"] = lfs_partition(_part(board, "data")["size"], bs, data_files, existing)
    with open(flash_path, "r+b") as f:
        for name, blob in writes.items():
            p = _part(board, name)
            f.seek(p["offset"])
            f.write(blob)
    return manifest
