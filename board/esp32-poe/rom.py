"""The esp32-poe board's `rom` module: the flash partitions by label, via esp32.Partition.

On the sim board the ROM (board/sim/rom.py) offers partitions; on the ESP32 the ESP-IDF
partition table (which fbtool writes from board.yaml) and MicroPython's esp32.Partition
do, so the same loader (firmware/loader/boot.py) runs on both.
"""
import esp32

flash_path = None


def partition(name):
    found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=name)
    if not found:
        raise OSError("no flash partition %r" % name)
    return found[0]
