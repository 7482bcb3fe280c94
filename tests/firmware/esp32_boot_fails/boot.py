"""A loader that fails at once (tests/firmware/test_esp32_poe.py): the board must reset, not
fall through to MicroPython's prompt."""
import machine

machine.loader_ran()          # the fake machine module records the call
raise RuntimeError("the loader failed")
