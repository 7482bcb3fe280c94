"""Modules the collector imports for a moment (web pages, counter tables) and drops from the
heap when the last collection using them is done, on both runtimes."""
import sys

import fleetbox
from fleetbox import collector

NAME = "countertables"
FULL = "fleetbox." + NAME


def _unload():
    """Forget the module as a fresh box would not have it; returns what to put back."""
    return sys.modules.pop(FULL, None), getattr(fleetbox, NAME, None)


def _restore(saved):
    mod, attr = saved
    if mod is not None:
        sys.modules[FULL] = mod
    if attr is not None:
        setattr(fleetbox, NAME, attr)


def test_a_borrowed_module_leaves_when_the_last_collection_gives_it_back():
    saved = _unload()
    if hasattr(fleetbox, NAME):
        delattr(fleetbox, NAME)
    try:
        collector._borrow(NAME)
        collector._borrow(NAME)            # a second collector needs it at the same time
        from fleetbox import countertables
        assert countertables.tlv(b"\x00\x01\x05") == {0: 5}
        collector._give_back(NAME)
        assert FULL in sys.modules          # the other collection still reads with it
        collector._give_back(NAME)
        assert FULL not in sys.modules and not hasattr(fleetbox, NAME)
        collector._borrow(NAME)            # the next device: imported again, works
        from fleetbox import countertables as again
        assert again.tlv(b"\x00\x01\x07") == {0: 7} and FULL in sys.modules
        collector._give_back(NAME)
        assert FULL not in sys.modules
    finally:
        _restore(saved)


def test_a_module_imported_by_someone_else_stays():
    from fleetbox import countertables
    collector._borrow(NAME)
    collector._give_back(NAME)
    assert sys.modules.get(FULL) is countertables and fleetbox.countertables is countertables
