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


# machine.reset_cause() -> the loader's reset causes (docs/boards.md). MicroPython's esp32
# port reports a brown-out as PWRON_RESET: a PoE blip is a power loss, not a crash.
def reset_cause():
    import machine
    return {machine.PWRON_RESET: "power-on", machine.HARD_RESET: "power-on",
            machine.DEEPSLEEP_RESET: "power-on", machine.WDT_RESET: "watchdog",
            machine.SOFT_RESET: "software"}.get(machine.reset_cause(), "unknown")


_BLINK = {"rescue": "1010100000000000"}   # hal.LED_BLINK's codes (the loader has no hal)
_led_timer = None


def led(pattern):
    """The status LED (GPIO 33, board.yaml) before any board code runs: the loader's rescue."""
    global _led_timer
    import machine
    pin = machine.Pin(33, machine.Pin.OUT)
    code = _BLINK.get(pattern, "1")
    step = [0]

    def tick(_):
        pin.value(code[step[0] % len(code)] == "1")
        step[0] += 1

    if _led_timer is None:
        _led_timer = machine.Timer(0)
    _led_timer.init(period=125, mode=machine.Timer.PERIODIC, callback=tick)
