"""The sim board's mask ROM: the only code the box runs that does not come from its flash.

Usage: micropython board/sim/rom.py FLASH.img

Like a real board's ROM it knows the flash chip and nothing else: it reads the
partition table at offset 0 (docs/flash-layout.md), offers partitions as block
devices through a `rom` module (the same shape as esp32.Partition), mounts the
`loader` partition and hands over to its `boot` module. Everything after that
(loader, firmware, board support) is bytecode read from the flash image.
"""
import os
import struct
import sys

REBOOT_EXIT = 75          # the simulator's "reset me" (simulator/hardware.py REBOOT_EXIT)
PT_MAGIC = b"FBPT"
PT_HEAD = "<4sBBHI"       # magic, version, count, reserved, block size
PT_ENTRY = "<16sIIB3x"    # name, offset, size, type
TYPE_NAMES = {1: "table", 2: "lfs", 3: "raw"}
_BLANK = bytearray()
PAGE_SIZE = 256           # NOR flash program page


class Partition:
    """A region of the flash file as a MicroPython block device (readblocks/writeblocks/ioctl)."""

    def __init__(self, flash, name, offset, size, block_size):
        self.flash = flash
        self.name = name
        self.offset = offset
        self.size = size
        self.block_size = block_size

    def readblocks(self, n, buf, off=0):
        f = self.flash
        f.seek(self.offset + n * self.block_size + off)
        f.readinto(buf)

    def writeblocks(self, n, buf, off=None):
        f = self.flash
        if off is None:
            # Whole-block write: a real chip erases first.
            off = 0
            self.ioctl(6, n)
        # NOR flash programs one page at a time: a power cut can land between pages
        # and leave a block half written, which the filesystem must survive.
        pos = self.offset + n * self.block_size + off
        mv = memoryview(buf)
        for i in range(0, len(buf), PAGE_SIZE):
            f.seek(pos + i)
            f.write(mv[i:i + PAGE_SIZE])

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.size // self.block_size
        if op == 5:  # block size
            return self.block_size
        if op == 6:  # erase: fill with 0xff like NOR flash
            f = self.flash
            f.seek(self.offset + arg * self.block_size)
            if len(_BLANK) != self.block_size:
                _BLANK[:] = b"\xff" * self.block_size
            f.write(_BLANK)   # one buffer for every erase: no 4 KB allocation in a fragmented heap
            return 0
        return 0

    def __repr__(self):
        return "<Partition %s @0x%x +0x%x>" % (self.name, self.offset, self.size)


def _crc32(data):
    import binascii
    return binascii.crc32(data) & 0xFFFFFFFF


def read_table(flash):
    flash.seek(0)
    head = flash.read(struct.calcsize(PT_HEAD))
    magic, version, count, _, block_size = struct.unpack(PT_HEAD, head)
    if magic != PT_MAGIC or version != 1:
        raise OSError("no fleetbox partition table in flash")
    body = flash.read(count * struct.calcsize(PT_ENTRY))
    (crc,) = struct.unpack("<I", flash.read(4))
    if crc != _crc32(head + body):
        raise OSError("partition table CRC mismatch")
    table = {}
    esz = struct.calcsize(PT_ENTRY)
    for i in range(count):
        name, offset, size, ptype = struct.unpack(PT_ENTRY, body[i * esz:(i + 1) * esz])
        name = name.rstrip(b"\x00").decode()
        table[name] = (offset, size, TYPE_NAMES.get(ptype, "raw"))
    return table, block_size


RESET_CAUSES = ("power-on", "watchdog", "software", "panic")


class Rom:
    """What the ROM offers the loader: partitions by name, the reset cause, the LED, the flash path."""

    def __init__(self, path):
        self.flash_path = path
        self.flash = open(path, "r+b")
        self.table, self.block_size = read_table(self.flash)
        self.state_dir = os.getenv("FLEETBOX_SIM_DIR")

    def partition(self, name):
        offset, size, _ = self.table[name]
        return Partition(self.flash, name, offset, size, self.block_size)

    def reset(self):
        """The reset line: the process ends with REBOOT_EXIT and the simulator boots the ROM
        again (simulator/hardware.py). Only the ROM, the program itself, ends the process."""
        sys.exit(REBOOT_EXIT)

    def reset_cause(self):
        """Why the box (re)started, as a chip's reset-reason register tells it.

        The simulator writes it to the `reset` file of the board's state directory
        before each start (docs/boards.md); none there is a power-on.
        """
        try:
            with open(self.state_dir + "/reset") as f:
                cause = f.read().strip()
        except (OSError, TypeError):
            return "power-on"
        return cause if cause in RESET_CAUSES else "unknown"

    def led(self, pattern):
        """The LED before any board code runs (the loader's rescue), as the board shows it."""
        if not self.state_dir:
            return
        tmp = self.state_dir + "/led.tmp"
        with open(tmp, "w") as f:
            f.write(pattern)
        os.rename(tmp, self.state_dir + "/led")


def main():
    import vfs
    if len(sys.argv) < 2:
        print("usage: rom.py FLASH.img")
        sys.exit(2)
    rom = Rom(sys.argv[1])
    sys.modules["rom"] = rom
    vfs.mount(vfs.VfsLfs2(rom.partition("loader")), "/loader")
    # Only flash-resident (and the runtime's frozen) code from here on.
    sys.path[:] = [".frozen", "/loader"]
    import boot  # the loader runs on import
    # the app's exit status: 0, or EX_CONFIG (78) when it cannot start (no usable configuration)
    sys.exit(boot.status or 0)


if __name__ == "__main__":
    main()
