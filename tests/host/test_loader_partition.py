"""fbtool flash --root: the loader partition carries the anchor, the rescue client and the app
modules it installs with, and keeps room for a rotated root and its replacement
(docs/flash-layout.md, "Trusted roots")."""
import json
import os

import pytest

from fbtool import flash
from tests import update_kit as kit


def _vector(name):
    with open(os.path.join(kit.VECTORS, name), "rb") as f:
        return f.read()


@pytest.mark.parametrize("board_name", ["sim", "esp32-poe"])
def test_the_loader_partition_holds_the_rescue_client_and_room_for_a_rotated_root(board_name):
    board = flash.load_board(board_name)
    part = flash.loader_partition(board)
    files = flash.loader_files(board, _vector("root-1.fbr"))
    assert json.loads(files["rescue.json"]) == {"board": board_name, "retry_s": 60}
    for name in flash.LOADER_VERIFIERS + flash.LOADER_RESCUE:
        assert "fleetbox/%s.mpy" % name in files
    assert "rescue.mpy" in files and files["root.fbr"] == _vector("root-1.fbr")
    # a rotated root, and its replacement being written beside it (the old one is kept until then)
    files["rotated.fbr"] = _vector("root-2.fbr")
    files["rotated.new"] = _vector("root-2.fbr") + b"\x00" * 64
    flash.lfs_partition(part["size"], board["flash"]["block_size"], files)    # FlashError when it does not fit
