"""board/esp32-poe on the unix port: what its rom module and board do first, with fake
`machine`, `micropython`, `os`, `network` and `esp32` modules (in this test only) recording
every call. No shell on the box: the watchdog first, no REPL on UART0, never the prompt."""
import sys

ROOT = __file__.rsplit("/tests/", 1)[0]
BOARD = ROOT + "/board/esp32-poe"
FAKED = ("machine", "micropython", "os", "network", "esp32", "rom", "board", "boot", "hal")


class Fake:
    """Any attribute, call or flag of a hardware module; calls are appended to `log`."""

    def __init__(self, log, name, files=()):
        self._log, self._name, self._files = log, name, files

    def __getattr__(self, attr):
        return Fake(self._log, self._name + "." + attr, self._files)

    def __call__(self, *args, **kw):
        if self._name == "os.listdir":
            return list(self._files)
        self._log.append((self._name, args, kw))
        return Fake(self._log, self._name + "()", self._files)

    def __or__(self, other):
        return self


def _with_fakes(files, fn):
    log = []
    saved = {m: sys.modules.get(m) for m in FAKED}
    for m in FAKED:
        sys.modules.pop(m, None)
    for m in ("machine", "micropython", "os", "network", "esp32"):
        sys.modules[m] = Fake(log, m, files)
    sys.path.insert(0, BOARD)
    sys.path.insert(1, ROOT + "/board")
    try:
        import rom
        return fn(rom, log)
    finally:
        sys.path.remove(BOARD)
        sys.path.remove(ROOT + "/board")
        for m in FAKED:
            sys.modules.pop(m, None)
            if saved[m] is not None:
                sys.modules[m] = saved[m]


def _names(log):
    return [c[0] for c in log]


def test_lock_down_starts_the_watchdog_first_then_closes_the_repl():
    def check(rom, log):
        rom.lock_down()
        assert log[0] == ("machine.WDT", (), {"timeout": rom.BOOT_WATCHDOG_S * 1000}), log
        assert ("micropython.kbd_intr", (-1,), {}) in log
        assert [c[1] for c in log if c[0] == "os.dupterm"] == [(None, 0), (None, 1)]
        rom.led("rescue")                      # each rescue retry shows it is alive
        assert "machine.WDT().feed" in _names(log)
    _with_fakes(["boot.mpy", "rom.mpy", "main.py"], check)


def test_a_development_flash_keeps_the_repl_but_not_without_a_watchdog():
    def check(rom, log):
        rom.lock_down()
        assert _names(log) == ["machine.WDT"]
    _with_fakes(["boot.mpy", "rom.mpy", "main.py", "devrepl.mpy"], check)


def test_main_never_falls_through_to_the_prompt():
    failing = ROOT + "/tests/firmware/esp32_boot_fails"

    def check(rom, log):
        sys.path.insert(0, failing)
        try:
            rom.run()
        except RuntimeError as e:
            assert "loader failed" in str(e)
        else:
            raise AssertionError("the loader's failure vanished")
        finally:
            sys.path.remove(failing)
        names = _names(log)
        assert names[0] == "machine.WDT" and names[-1] == "machine.reset", names
        assert names.index("micropython.kbd_intr") < names.index("machine.loader_ran") < names.index("machine.reset")
    _with_fakes(["boot.mpy", "rom.mpy", "main.py"], check)


def test_the_board_rearms_the_watchdog_first_and_feeds_it():
    def check(rom, log):
        import board
        b = board.Board(rom, "slot_a")
        assert log[0] == ("machine.WDT", (), {"timeout": board.WATCHDOG_S * 1000}), log[:3]
        b.feed_watchdog()
        assert _names(log)[-1] == "machine.WDT().feed"
        assert _names(log).count("machine.WDT") == 1   # no second, lazy one at the first feed
    _with_fakes([], check)
