"""Flash images: lay out a board's flash from its board.yaml (format: docs/flash-layout.md).

Two partition-table formats: the fleetbox table (`table: fleetbox`, the sim board's ROM
reads it) and the ESP-IDF table (`table: esp-idf`, what an ESP32's bootloader and
MicroPython's esp32.Partition read).
"""
import binascii
import hashlib
import json
import os
import struct

import yaml
from littlefs import LittleFS
from littlefs.errors import LittleFSError

from . import image, paths
from .errors import FatalError, yaml_problem

PT_MAGIC = b"FBPT"
PT_HEAD = "<4sBBHI"
PT_ENTRY = "<16sIIB3x"
PT_TYPES = {"table": 1, "lfs": 2, "raw": 3}

# ESP-IDF partition table (esp-idf components/partition_table/gen_esp32part.py).
IDF_ENTRY = "<2sBBII16sI"          # magic AA 50, type, subtype, offset, size, label, flags
IDF_MAGIC = b"\xAA\x50"
IDF_MD5_MARK = b"\xEB\xEB" + b"\xFF" * 14
IDF_MAX_LEN = 0xC00
IDF_TYPES = {"app": 0x00, "data": 0x01}
IDF_SUBTYPES = {"app": {"factory": 0x00, "ota_0": 0x10, "ota_1": 0x11},
                "data": {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "undefined": 0x06,
                         "fat": 0x81, "spiffs": 0x82}}


class FlashError(FatalError):
    pass


def load_board(name):
    path = os.path.join(paths.board_dir(name), "board.yaml")
    try:
        with open(path) as f:
            board = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise FlashError(yaml_problem(path, e), hint="fix the board description")
    try:
        return _check_board(name, board)
    except (KeyError, TypeError) as e:
        raise FlashError("%s: missing or malformed %s" % (path, e), hint="docs/flash-layout.md lists the keys")


def _check_board(name, board):
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
    kind = fl.get("table", "fleetbox")
    if kind not in ("fleetbox", "esp-idf"):
        raise FlashError("board %s: unknown partition table format %r" % (name, kind))
    for role in ("ptable", "bootstate", "slot_a", "slot_b", "identity", "data"):
        _part(board, role)
    loader_partition(board)
    if kind == "esp-idf":
        for p in fl["partitions"]:
            if "idf" in p and p["idf"][0] == "app" and p["offset"] % 0x10000:
                raise FlashError("board %s: app partition %s must be 64 KiB aligned" % (name, p["name"]))
    return board


def loader_partition(board):
    """The partition that holds the loader: role `loader`, else the one named `loader`."""
    for p in board["flash"]["partitions"]:
        if p.get("role") == "loader":
            return p
    return _part(board, "loader")


def partition_table(board):
    """The bytes of the board's partition table, in the format its board.yaml names."""
    if board["flash"].get("table", "fleetbox") == "esp-idf":
        return esp_idf_table(board)
    fl = board["flash"]
    parts = fl["partitions"]
    head = struct.pack(PT_HEAD, PT_MAGIC, 1, len(parts), 0, fl["block_size"])
    body = b"".join(struct.pack(PT_ENTRY, p["name"].encode(), p["offset"], p["size"], PT_TYPES[p["type"]])
                    for p in parts)
    return head + body + struct.pack("<I", binascii.crc32(head + body) & 0xFFFFFFFF)


def esp_idf_table(board):
    """An ESP-IDF partition table: 32-byte entries, the MD5 entry, 0xFF up to 0xC00 bytes."""
    out = b""
    for p in board["flash"]["partitions"]:
        if "idf" not in p:
            continue       # bootloader and table: fixed places the ESP32 ROM knows, not entries
        t, sub = p["idf"]
        label = p["name"].encode()
        if len(label) > 15:
            raise FlashError("ESP-IDF labels are at most 15 bytes: %r" % p["name"])
        out += struct.pack(IDF_ENTRY, IDF_MAGIC, IDF_TYPES[t], IDF_SUBTYPES[t][sub], p["offset"], p["size"], label, 0)
    out += IDF_MD5_MARK + hashlib.md5(out).digest()
    if len(out) > IDF_MAX_LEN:
        raise FlashError("too many partitions for an ESP-IDF table")
    return out + b"\xff" * (IDF_MAX_LEN - len(out))


LOADER_VERIFIERS = ("__init__", "errors", "rsapss", "updroot")
# the rescue client (firmware/loader/rescue.py) runs the app's own installer and TLS client
LOADER_RESCUE = ("port", "atomicfile", "keywrap", "updimage", "updater", "https", "cbor", "envelope", "downlink")
RESCUE_RETRY_S = 60


def loader_files(board, root=None, rescue_retry_s=RESCUE_RETRY_S):
    """{path: bytes} of the loader partition: the stage-0 loader plus what the board adds;
    with root (root metadata bytes, the trust anchor) also root.fbr, the verifiers the
    loader checks slot signatures with (fleetbox/errors, rsapss, updroot), and the rescue
    client with the app modules it installs through and its settings (rescue.json)."""
    files = {arc: image.compile_mpy(src, arc[:-4] + ".py") for arc, src in image.loader_sources()}
    if root is not None:
        files["root.fbr"] = root
        files["rescue.mpy"] = image.compile_mpy(os.path.join(paths.FIRMWARE, "loader", "rescue.py"), "rescue.py", 3)
        files["rescue.json"] = json.dumps({"board": board["name"], "retry_s": rescue_retry_s}).encode()
        for name in LOADER_VERIFIERS + LOADER_RESCUE:
            arc = "fleetbox/%s.py" % name
            files[arc[:-3] + ".mpy"] = image.compile_mpy(os.path.join(paths.FIRMWARE, arc), arc, 3)
    spec = board.get("loader") or {}
    for name in spec.get("files", []):
        src = os.path.join(paths.board_dir(board["name"]), name)
        files[name[:-3] + ".mpy"] = image.compile_mpy(src, name)
    if spec.get("main"):
        files["main.py"] = spec["main"].encode()
    return files


def lfs_partition(size, block_size, files=(), existing=None):
    """A LittleFS2 image of `size` bytes holding files {path: bytes}; `existing` keeps an old one's content."""
    count = size // block_size
    if existing is not None:
        fs = LittleFS(block_size=block_size, block_count=count, mount=False)
        fs.context.buffer = bytearray(existing)
        fs.mount()
    else:
        fs = LittleFS(block_size=block_size, block_count=count)
    try:
        for path, data in dict(files).items():
            d = os.path.dirname(path)
            if d:
                fs.makedirs(d, exist_ok=True)
            with fs.open(path, "wb") as f:
                f.write(data)
    except LittleFSError as e:
        total = sum(len(data) for data in dict(files).values())
        raise FlashError("%d bytes of files do not fit a %d-byte partition (%s)" % (total, size, e),
                         hint="a bigger partition in board.yaml, or a smaller image")
    return bytes(fs.context.buffer)


def read_lfs(buf, block_size):
    """Mount a LittleFS partition image read from flash (for inspection and tests)."""
    fs = LittleFS(block_size=block_size, block_count=len(buf) // block_size, mount=False)
    fs.context.buffer = bytearray(buf)
    fs.mount()
    return fs


SLOT_MANIFEST = "manifest.json"


def slot_files(manifest, files):
    """A slot's files: the image's, and its manifest, which the loader verifies them against."""
    out = dict(files)
    out[SLOT_MANIFEST] = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    return out


def slot_partition(board, name, app_image):
    """The LittleFS image of slot `name` holding the firmware image `app_image`."""
    manifest, files = image.parse(app_image)
    if manifest["board"] != board["name"]:
        raise FlashError("image is for board %r, not %r" % (manifest["board"], board["name"]))
    return lfs_partition(_part(board, name)["size"], board["flash"]["block_size"], slot_files(manifest, files))


def bootstate_module():
    """The loader's own boot-state codec (firmware/loader/bootstate.py): host and box agree byte for byte."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("fleetbox_loader_bootstate",
                                                  os.path.join(paths.FIRMWARE, "loader", "bootstate.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read_boot_state(buf, block_size):
    """The newest valid boot state in a `bootstate` partition's bytes, or None."""
    bs = bootstate_module()
    copies = [bs.decode(buf[i * block_size:i * block_size + bs.SIZE]) for i in (0, 1)]
    copies = [c for c in copies if c is not None]
    return max(copies, key=lambda c: c.seq) if copies else None


def boot_state_partition(board, counter=0, existing=None, record_a=None):
    """A `bootstate` partition: slot A active and confirmed, one copy in the first block, the other erased.

    The security counter never goes down: an existing state's counter is kept when higher.
    record_a: slot A's verified-once record (digest, counter, version), the manufacturer's word
    for a slot that carries no signature on a box with a trust anchor.
    """
    bs = bootstate_module()
    block = board["flash"]["block_size"]
    st = bs.State()
    st.counter = counter
    st.records[0] = record_a
    old = read_boot_state(existing, block) if existing is not None else None
    if old is not None:
        st.counter = max(counter, old.counter)
        st.seq = old.seq + 1
    st.seq += (st.seq & 1)          # even: the first block
    out = bytearray(b"\xff" * _part(board, "bootstate")["size"])
    out[:bs.SIZE] = bs.encode(st)
    return bytes(out)


def _record(manifest):
    mbytes = slot_files(manifest, {})[SLOT_MANIFEST]
    return (hashlib.sha256(mbytes).digest(), int(manifest.get("security_counter", 0)),
            str(manifest["version"])[:20])


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


def write_sim(flash_path, app_image, board_name="sim", identity=None, config=None, erase=False, runtime=None,
              root=None):
    """Write loader + app (slot A) into a flash image file, creating it (all 0xff) when new or erased.

    identity (dict) goes to the identity partition, config (dict) seeds the data partition;
    on an existing flash both are kept unless given. runtime (bytes): for boards whose
    MicroPython lives in flash (esp32-poe), its image, written at the bootloader's offset.
    root (bytes): root metadata, the box's trust anchor (docs/update-image.md): the loader then
    boots only signed slots, and slot A by the verified-once record written here.
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
    lp = loader_partition(board)
    writes = {}
    if runtime is not None:
        writes["bootloader"] = runtime
    writes.update({
        "ptable": partition_table(board),
        lp["name"]: lfs_partition(lp["size"], bs, loader_files(board, root)),
        "slot_a": slot_partition(board, "slot_a", app_image),
        "bootstate": boot_state_partition(board, int(manifest.get("security_counter", 0)),
                                          None if fresh else read_partition(flash_path, board, "bootstate"),
                                          _record(manifest) if root is not None else None),
    })
    if fresh:
        writes["slot_b"] = lfs_partition(_part(board, "slot_b")["size"], bs)
    if identity is not None or fresh:
        ident = {"identity.json": json.dumps(identity or {}).encode()}
        writes["identity"] = lfs_partition(_part(board, "identity")["size"], bs, ident)
    if config is not None or fresh:
        data_files = {"config.json": json.dumps(config or {}).encode()}
        existing = None if fresh else read_partition(flash_path, board, "data")
        writes["data"] = lfs_partition(_part(board, "data")["size"], bs, data_files, existing)
    if runtime is not None:
        # MicroPython's combined image (bootloader, its table, the app) from 0x1000 up to the app's end.
        app = _part(board, "factory")
        if _part(board, "bootloader")["offset"] + len(runtime) > app["offset"] + app["size"]:
            raise FlashError("the MicroPython image (%d bytes) overruns the factory partition" % len(runtime))
    with open(flash_path, "r+b") as f:
        for name, blob in writes.items():
            p = _part(board, name)
            f.seek(p["offset"])
            f.write(blob)
    return manifest
