"""A box's pack area on MicroPython, on a LittleFS data partition in a flash file (the sim
board's block device, NOR pages and all) with its loader partition beside it (where the pack
floor lives): install a pack image (optionally killed at a chosen page program), load the pack
in force and collect once with it, or factory-reset the box.

Usage: micropython tests/mp/pack_box.py FIRMWARE_DIR FLASH.img LOADER.img ROOT BUILTIN MODE ...
  install IMAGE WRAP IDENTITY MIN_TIME [CUT_AT]   prints `report <json>`, `pages <page programs>` and
      `switch <page programs before the pointer's rename>`, `floor <... before the pack floor's>`;
      with CUT_AT, at that page program prints `cut <n>` and waits to be killed (the power cut:
      nothing after it reaches the flash)
  load [ADDRESS PORT]                              prints `use <letter|builtin> <version> <vendors>`,
      each problem as `problem <json>`, and with an address the records of one collection: `rec <json>`
  flip PATH OFFSET                                 flips a bit of a file on the partition (tampering)
  reset                                            the factory reset (fleetbox.provision): prints `reset <ok>`
"""
import json
import sys

sys.path.insert(0, sys.argv[1])
sys.path.insert(1, sys.argv[1][:-len("firmware")] + "board/sim")
import asyncio  # noqa: E402
import time  # noqa: E402

import vfs  # noqa: E402
from rom import Partition  # noqa: E402

from fleetbox import pack, port, provision, snmp, updater, updimage  # noqa: E402

flash_path, loader_path, root_path, builtin, mode = sys.argv[2:7]
args = sys.argv[7:]
SIZE = 256 * 1024
LOADER_SIZE = 64 * 1024
pages = [0]
cut_at = int(args[4]) if mode == "install" and len(args) > 4 else None


class Flash(Partition):
    """The data partition; counts NOR page programs and stops dead at cut_at."""

    def writeblocks(self, n, buf, off=None):
        if off is None:
            self.ioctl(6, n)
            off = 0
        for i in range(0, len(buf), 256):
            pages[0] += 1
            if pages[0] == cut_at:
                print("cut", pages[0])
                while True:         # the power goes here: the test kills this process
                    time.sleep(1)
            self.flash.seek(self.offset + n * self.block_size + off + i)
            self.flash.write(memoryview(buf)[i:i + 256])


def _partition(path, name, size, mount_at):
    try:
        f = open(path, "r+b")
        fresh = False
    except OSError:
        f = open(path, "w+b")
        f.write(b"\xff" * size)
        fresh = True
    dev = Flash(f, name, 0, size, 4096)
    if fresh:
        vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), mount_at)
    return f


f = _partition(flash_path, "data", SIZE, "/data")
loader = _partition(loader_path, "loader", LOADER_SIZE, "/loader")
data_dir = "/data"
packs = pack.Packs(data_dir, builtin=builtin, root_file=root_path)     # its floor: /loader/pack.floor


def _read(path):
    with open(path, "rb") as f:
        return f.read()


if mode == "install":
    image, wrap, ident_path, min_time = args[:4]
    switch = [0]
    floor = [0]

    def fault(op, path):
        if op == "rename" and path.endswith("/" + pack.POINTER):
            switch[0] = pages[0]
        if op == "rename" and path == packs.floor_file:
            floor[0] = pages[0]
        return 0
    packs.load()
    root = updimage.load_root(_read(root_path))
    port.set_flash_fault(fault)
    inst = packs.installer(root, json.loads(_read(ident_path)), data_dir, 1, int(min_time), 1)
    report = inst.run(updater.FileSource(image), {"wrap": _read(wrap).decode()})
    port.set_flash_fault(None)
    print("report", json.dumps(report))
    print("pages", pages[0])
    print("switch", switch[0])
    print("floor", floor[0])
elif mode == "flip":
    with open(data_dir + "/" + args[0], "rb") as g:
        b = bytearray(g.read())
    b[int(args[1])] ^= 0x20
    with open(data_dir + "/" + args[0], "wb") as g:
        g.write(b)
    print("flipped")
elif mode == "reset":
    print("reset", provision.factory_reset(data_dir))
else:
    lib = packs.load()
    print("use", packs.in_use or "builtin", packs.in_use_version or "-",
          ",".join(lib.vendors()) if lib else "-")
    for p in packs.problems:
        print("problem", json.dumps(p))
    if args:
        from fleetbox.sweep import SweepOptions, sweep

        async def collect():
            client = snmp.Client(timeout_ms=1000, retries=1)
            try:
                await sweep(client, [(args[0], int(args[1]))], lambda rec: print("rec", json.dumps(rec)),
                            SweepOptions(scan="counters", creds=[snmp.Credential("2c", "public")], profiles=lib,
                                         workers=1))
            finally:
                client.close()
        asyncio.run(collect())
vfs.umount("/data")
vfs.umount("/loader")
f.close()
loader.close()
