#!/usr/bin/micropython
"""The qemu-x86_64 board's ROM: PID 1 of the appliance, the only code not read from its flash.

The kernel runs it as /init of the initramfs (fbtool appliance), through the shebang
above: there is no shell. It does what firmware in a real box's boot ROM and its
board bring-up would: mounts /dev, /proc and /sys; loads the virtio drivers (the
kernel has none built in) and the watchdog's; opens the virtio disk /dev/vda, which
holds exactly the flash image `fbtool flash --raw` writes; reads the partition table;
mounts the loader partition and hands over to its `boot` module, as the sim ROM does.
Everything it needs from the kernel it asks libc for through `ffi`.

When the firmware exits with 75 (Board.reboot) the VM resets; any other end powers
it off (QEMU exits): PID 1 must never return.
"""
import ffi
import os
import struct
import sys
import time

PT_MAGIC = b"FBPT"
PT_HEAD = "<4sBBHI"       # magic, version, count, reserved, block size
PT_ENTRY = "<16sIIB3x"    # name, offset, size, type
TYPE_NAMES = {1: "table", 2: "lfs", 3: "raw"}
DISK = "/dev/vda"
MODULE_DIR = "/usr/lib/modules"
WATCHDOG_S = 60           # board.yaml hardware.watchdog_s: i6300esb's heartbeat

O_RDONLY = 0
O_RDWR = 2
O_CLOEXEC = 0o2000000
O_SYNC = 0o4010000        # every write reaches the disk before it returns: a power cut loses no acknowledged block
SYS_FINIT_MODULE = 313
REBOOT_RESTART = 0x01234567
REBOOT_POWER_OFF = 0x4321FEDC
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
REBOOT_EXIT = 75

libc = ffi.open("libc.so.6")
_mount = libc.func("i", "mount", "sssLp")
_open = libc.func("i", "open", "sii")
close = libc.func("i", "close", "i")
pread = libc.func("l", "pread", "iplq")
pwrite = libc.func("l", "pwrite", "iplq")
read = libc.func("l", "read", "ipL")
write = libc.func("l", "write", "ipL")
ioctl = libc.func("i", "ioctl", "iLp")
_syscall3 = libc.func("l", "syscall", "lisi")
_reboot = libc.func("i", "reboot", "i")
_sync = libc.func("v", "sync", "")


def log(msg):
    print("rom: " + msg)


def errno():
    return os.errno()


def open_fd(path, flags):
    fd = _open(path, flags | O_CLOEXEC, 0)
    if fd < 0:
        raise OSError(errno())
    return fd


def mount(source, target, fstype, flags=0):
    if _mount(source, target, fstype, flags, None) != 0:
        e = errno()
        if e != 16:   # EBUSY: mounted already
            raise OSError(e)


def load_module(path, params=""):
    fd = open_fd(path, O_RDONLY)
    try:
        if _syscall3(SYS_FINIT_MODULE, fd, params, 0) != 0 and errno() != 17:   # EEXIST: loaded
            raise OSError("%s: errno %d" % (path, errno()))
    finally:
        close(fd)


def reboot():
    _sync()
    _reboot(REBOOT_RESTART)


def power_off():
    _sync()
    _reboot(REBOOT_POWER_OFF)


class Partition:
    """A region of the virtio disk as a MicroPython block device (readblocks/writeblocks/ioctl)."""

    def __init__(self, fd, name, offset, size, block_size):
        self.fd = fd
        self.name = name
        self.offset = offset
        self.size = size
        self.block_size = block_size

    def _pos(self, n, off):
        return self.offset + n * self.block_size + off

    def readblocks(self, n, buf, off=0):
        if pread(self.fd, buf, len(buf), self._pos(n, off)) != len(buf):
            raise OSError(5)   # EIO

    def writeblocks(self, n, buf, off=None):
        if off is None:
            off = 0
            self.ioctl(6, n)   # whole-block write: erase first, as a flash chip does
        if pwrite(self.fd, buf, len(buf), self._pos(n, off)) != len(buf):
            raise OSError(5)

    def ioctl(self, op, arg):
        if op == 4:   # block count
            return self.size // self.block_size
        if op == 5:   # block size
            return self.block_size
        if op == 6:   # erase: 0xff like NOR flash, so LittleFS sees the same medium on every board
            if len(_BLANK) != self.block_size:
                _BLANK[:] = b"\xff" * self.block_size
            if pwrite(self.fd, _BLANK, self.block_size, self._pos(arg, 0)) != self.block_size:
                raise OSError(5)
            return 0
        return 0

    def __repr__(self):
        return "<Partition %s @0x%x +0x%x>" % (self.name, self.offset, self.size)


_BLANK = bytearray()


def read_table(fd):
    hsz = struct.calcsize(PT_HEAD)
    esz = struct.calcsize(PT_ENTRY)
    head = bytearray(hsz)
    pread(fd, head, hsz, 0)
    magic, version, count, _, block_size = struct.unpack(PT_HEAD, head)
    if magic != PT_MAGIC or version != 1:
        raise OSError("no fleetbox partition table on " + DISK)
    rest = bytearray(count * esz + 4)
    pread(fd, rest, len(rest), hsz)
    import binascii
    (crc,) = struct.unpack("<I", rest[-4:])
    if crc != binascii.crc32(bytes(head) + bytes(rest[:-4])) & 0xFFFFFFFF:
        raise OSError("partition table CRC mismatch")
    table = {}
    for i in range(count):
        name, offset, size, ptype = struct.unpack(PT_ENTRY, rest[i * esz:(i + 1) * esz])
        table[name.rstrip(b"\x00").decode()] = (offset, size, TYPE_NAMES.get(ptype, "raw"))
    return table, block_size


class Rom:
    """What the ROM offers the loader and the board: partitions by name, libc, reset and power-off."""

    def __init__(self, fd):
        self.fd = fd
        self.flash_path = DISK
        self.table, self.block_size = read_table(fd)
        self.libc = libc
        self.open_fd = open_fd
        self.read = read
        self.write = write
        self.ioctl = ioctl
        self.close = close
        self.reboot = reboot
        self.power_off = power_off

    def partition(self, name):
        offset, size, _ = self.table[name]
        return Partition(self.fd, name, offset, size, self.block_size)

    def reset(self):
        """The reset line: the VM resets at once (the disk is written O_SYNC, nothing is lost)."""
        log("reset")
        reboot()


def bring_up():
    for src, target, fstype, flags in (("devtmpfs", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC),
                                       ("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC),
                                       ("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)):
        mount(src, target, fstype, flags)
    for name in sorted(os.listdir(MODULE_DIR)):
        params = "heartbeat=%d" % WATCHDOG_S if name.endswith("i6300esb.ko") else ""
        load_module(MODULE_DIR + "/" + name, params)
    # devtmpfs makes the node once virtio_blk has probed the disk
    for _ in range(100):
        try:
            os.stat(DISK)
            break
        except OSError:
            time.sleep_ms(50)
    return open_fd(DISK, O_RDWR | O_SYNC)


def main():
    import vfs
    log("fleetbox qemu-x86_64 ROM")
    rom = Rom(bring_up())
    sys.modules["rom"] = rom
    vfs.mount(vfs.VfsLfs2(rom.partition("loader")), "/loader")
    sys.path[:] = [".frozen", "/loader"]
    import boot  # noqa: F401  (the loader runs on import)


def run():
    code = 1
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.args[0] if e.args and isinstance(e.args[0], int) else 0
    except BaseException as e:  # noqa: BLE001  (PID 1 must not die: report, then power off)
        sys.print_exception(e)
    if code == REBOOT_EXIT:
        log("reset")
        reboot()
    log("power off (exit %s)" % code)
    power_off()
    while True:   # reboot() returned: nothing else to do
        time.sleep(1)


if __name__ == "__main__":
    run()
