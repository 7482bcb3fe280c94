"""fleetbox.updroot's root rotation on the box: rotate() walks a chain link by link and keeps the
newest root that verified; trusted_root() loads the anchor or that root. On CPython and MicroPython."""

from check import fresh_dir, raises, rmtree, tmp
from fleetbox import port, updroot
from vectors import load

TMP = tmp("fbx-test-updroot")


def _setup():
    d = fresh_dir(TMP)
    with open(d + "/root.fbr", "wb") as f:
        f.write(load("root-1.fbr"))
    return d + "/root.fbr", d + "/rotated.fbr"


def test_rotation_is_walked_kept_and_trusted():
    anchor, rotated = _setup()
    try:
        root = updroot.trusted_root(anchor, rotated)
        assert root.version == 1 and not port.exists(rotated)
        served = []

        def fetch(v):
            served.append(v)
            return load("root-%d.fbr" % v)
        assert updroot.rotate(root, fetch, 1, rotated) is root and served == []     # nothing newer
        new = updroot.rotate(root, fetch, 2, rotated)
        assert new.version == 2 and served == [2]
        assert updroot.trusted_root(anchor, rotated).version == 2
        with open(rotated, "rb") as f:
            assert f.read() == load("root-2.fbr")
    finally:
        rmtree(TMP)


def test_a_bad_link_is_refused_and_nothing_is_kept():
    anchor, rotated = _setup()
    try:
        root = updroot.trusted_root(anchor, rotated)
        e = raises(updroot.RootRollback, updroot.rotate, root, lambda v: load("root-1.fbr"), 2, rotated)
        assert e.reason == "root_version"
        assert raises(updroot.Truncated, updroot.rotate, root, lambda v: None, 2, rotated).reason == "truncated"
        assert raises(updroot.BadFormat, updroot.rotate, root, lambda v: None, 40, rotated).reason == "bad_format"
        altered = bytearray(load("root-2.fbr"))
        altered[-1] ^= 1                     # the last signature's last byte
        e = raises(updroot.UpdateError, updroot.rotate, root, lambda v: bytes(altered), 2, rotated)
        assert e.reason == "threshold"
        # expired against the time floor: only the newest link is held against it
        assert raises(updroot.Expired, updroot.rotate, root, lambda v: load("root-2.fbr"), 2, rotated,
                      1 << 40).reason == "expired"
        assert not port.exists(rotated) and updroot.trusted_root(anchor, rotated).version == 1
    finally:
        rmtree(TMP)


def test_a_stored_root_that_no_longer_verifies_or_goes_back_leaves_the_anchor():
    anchor, rotated = _setup()
    try:
        logged = []
        for bad in (load("root-1.fbr"), load("root-2.fbr")[:-5]):
            with open(rotated, "wb") as f:
                f.write(bad)
            assert updroot.trusted_root(anchor, rotated, logged.append).version == 1
        assert "[root_version]" in logged[0] and "[truncated]" in logged[1]
    finally:
        rmtree(TMP)
