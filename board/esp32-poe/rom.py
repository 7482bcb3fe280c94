"""The esp32-poe board's `rom` module: the flash partitions by label, via esp32.Partition.

On the sim board the ROM (board/sim/rom.py) offers partitions; on the ESP32 the ESP-IDF
partition table (which fbtool writes from board.yaml) and MicroPython's esp32.Partition
do, so the same loader (firmware/loader/boot.py) runs on both.
"""
import esp32

flash_path = None

# The watchdog runs from the first line of main.py: a failure anywhere in the boot resets the
# box instead of leaving it at a prompt. The loader's work (verifying a slot, a rescue retry
# every 60 s) fits this; the app's board re-arms it at board.yaml's watchdog_s.
BOOT_WATCHDOG_S = 150
DUPTERM_SLOTS = 2            # MicroPython's esp32 port: dupterm slots (WebREPL, a UART)
DEVELOPMENT_MARKER = "devrepl.mpy"   # on the loader partition: keep the REPL (docs/boards.md)
watchdog = None


def development():
    """True when the loader partition carries the development marker (fbtool flash writes that
    partition at the bench only; nothing in the field writes it)."""
    import os
    return DEVELOPMENT_MARKER in os.listdir("/")


def lock_down():
    """First thing at power-on: start the watchdog, then close MicroPython's UART REPL."""
    global watchdog
    import machine
    watchdog = machine.WDT(timeout=BOOT_WATCHDOG_S * 1000)
    if development():
        return
    import micropython
    import os
    micropython.kbd_intr(-1)          # Ctrl-C on UART0 no longer breaks into the REPL
    for slot in range(DUPTERM_SLOTS):
        try:
            os.dupterm(None, slot)    # no duplicated terminal (WebREPL, another UART) stays attached
        except (ValueError, OSError):
            pass


def run():
    """main.py: lock down, run the fleetbox loader; whatever it does after, never fall through to
    MicroPython's prompt (a shell on the box): reset (but on a development flash)."""
    lock_down()
    try:
        import boot  # noqa: F401  (the loader runs at import)
    finally:
        if not development():
            import machine
            machine.reset()


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
    """The status LED (GPIO 33, board.yaml) before any board code runs: the loader's rescue, which
    calls it on every retry (so it also feeds the boot watchdog: the rescue loop is alive)."""
    global _led_timer
    import machine
    if watchdog is not None:
        watchdog.feed()
    pin = machine.Pin(33, machine.Pin.OUT)
    code = _BLINK.get(pattern, "1")
    step = [0]

    def tick(_):
        pin.value(code[step[0] % len(code)] == "1")
        step[0] += 1

    if _led_timer is None:
        _led_timer = machine.Timer(0)
    _led_timer.init(period=125, mode=machine.Timer.PERIODIC, callback=tick)
