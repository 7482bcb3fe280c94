"""A box's pack area on MicroPython: install a pack image (optionally killed at a chosen
flash write), or load the pack in force and collect once with it.

Usage: micropython tests/mp/pack_box.py FIRMWARE_DIR DATA_DIR ROOT BUILTIN MODE ...
  install IMAGE WRAP IDENTITY MIN_TIME [CUT_AT]   prints `report <json>` and `ops <flash writes>`;
      with CUT_AT, at that flash write prints `cut <op> <path>` and waits to be killed
  load [ADDRESS PORT]                              prints `use <letter|builtin> <version> <vendors>`,
      each problem as `problem <json>`, and with an address the records of one collection: `rec <json>`
"""
import json
import sys

sys.path.insert(0, sys.argv[1])
import asyncio  # noqa: E402
import time  # noqa: E402

from fleetbox import pack, port, snmp, updater, updimage  # noqa: E402

data_dir, root_path, builtin, mode = sys.argv[2:6]
args = sys.argv[6:]
packs = pack.Packs(data_dir, builtin=builtin, root_file=root_path)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


if mode == "install":
    image, wrap, ident_path, min_time = args[:4]
    cut_at = int(args[4]) if len(args) > 4 else None
    ops = [0]

    def fault(op, path):
        ops[0] += 1
        if ops[0] == cut_at:
            print("cut", ops[0], op, path)
            while True:         # the power goes here: the test kills this process
                time.sleep(1)
        return 0
    packs.load()
    root = updimage.load_root(_read(root_path))
    port.set_flash_fault(fault)
    inst = packs.installer(root, json.loads(_read(ident_path)), data_dir, 1, int(min_time), 1)
    report = inst.run(updater.FileSource(image), {"wrap": _read(wrap).decode()})
    port.set_flash_fault(None)
    print("report", json.dumps(report))
    print("ops", ops[0])
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
