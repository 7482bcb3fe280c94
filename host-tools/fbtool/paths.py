"""Where the repository's parts are, seen from the host tools."""
import os
import sys

from .errors import FatalError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIRMWARE = os.path.join(ROOT, "firmware")
BOARDS = os.path.join(ROOT, "board")
BUILD = os.path.join(ROOT, "build")


def micropython():
    """The `micropython` command installed in the same virtualenv as fbtool."""
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    return here if os.path.exists(here) else "micropython"


def boards():
    """The names of the boards that have a board.yaml."""
    return sorted(n for n in os.listdir(BOARDS) if os.path.isfile(os.path.join(BOARDS, n, "board.yaml")))


def board_dir(name):
    d = os.path.join(BOARDS, name)
    if not os.path.isfile(os.path.join(d, "board.yaml")):
        raise FatalError("unknown board %r (no board/%s/board.yaml)" % (name, name),
                         hint="boards: %s" % ", ".join(boards()))
    return d
