"""Flash faults at every write site of the firmware (CPython and MicroPython).

Every write the firmware makes on the data partition goes through port's file functions
(open_write, close_write, rename: fleetbox.atomicfile). A fault installed there
(port.set_flash_fault, as the sim board's flash switch does) fails one step with ENOSPC
or EIO; each site then either raises OSError or carries on, and in both cases leaves
the file it was replacing as it was and no temporary file behind.
"""
import os
import sys

from fleetbox import config, delta, devstate, downlink, port, uplink
from fleetbox.spool import Spool

OPS = ("open", "close", "rename")
ERRNOS = (port.ENOSPC, port.EIO)
DEVICE_KEY = "00" * 32


def _root():
    for p in sys.path:
        if p.endswith("/firmware") and _exists(p + "/fleetbox/port.py"):
            return p[:-len("/firmware")]
    raise AssertionError("firmware/ is not on sys.path")


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _fresh(name):
    d = "/tmp/fbflash-" + name
    _rmtree(d)
    os.mkdir(d)
    return d


def _rmtree(d):
    try:
        names = os.listdir(d)
    except OSError:
        return
    for n in names:
        p = d + "/" + n
        try:
            os.remove(p)
        except OSError:
            _rmtree(p)
    os.rmdir(d)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _tmp_files(d):
    out = []
    for n in os.listdir(d):
        if n.endswith(".tmp"):
            out.append(n)
        elif not _exists(d + "/" + n + "/."):
            continue
        else:
            out += [n + "/" + m for m in _tmp_files(d + "/" + n)]
    return out


def _batches(d):
    return lambda: sorted(n for n in os.listdir(d) if n.endswith(".b"))


# -- the sites: each prepares its state in d (no faults) and returns (file it replaces, the write);
# the spool's batches are a folder: there the "file" is the list of batches
def _site_spool_batch(d):
    s = Spool(d + "/spool")
    s.put(b"first")
    return _batches(d + "/spool"), lambda: s.put(b"second")


def _site_spool_last(d):
    s = Spool(d + "/spool")
    s.ack(s.put(b"one"))
    i = s.put(b"two")
    return d + "/spool/last", lambda: s.ack(i)


def _site_spool_epoch(d):
    os.mkdir(d + "/spool")
    return d + "/spool/epoch", lambda: Spool(d + "/spool")


def _site_devices(d):
    st = devstate.DeviceState(d + "/devices.json")
    st.update("S1", t=1)
    st.save()
    st.update("S2", t=2)
    return d + "/devices.json", st.save


def _site_statics(d):
    st = devstate.Statics(d + "/statics")
    st.save("127.0.0.9", 161, {1: {5: 3, 6: "toner"}}, {}, 0)
    return d + "/statics/127.0.0.9_161.json", lambda: st.save("127.0.0.9", 161, {1: {5: 4, 6: "drum"}}, {}, 1)


def _site_delta(d):
    ds = delta.DeltaState(d + "/uplink.delta")
    _, pending = ds.encode(1, {"scan": "full", "cycle": 100, "records": [{"serial": "S1", "counters": {"total": 1}}]})
    ds.commit(pending)
    _, pending = ds.encode(2, {"scan": "full", "cycle": 200, "records": [{"serial": "S1", "counters": {"total": 2}}]})
    return d + "/uplink.delta", lambda: ds.commit(pending)


def _site_uplink_seq(d):
    cfg = config.check({"endpoints": [{"url": "https://127.0.0.1:8443/v1/upload"}],
                        "ca": "MAIFAA==", "pins": ["00" * 32]})
    up = uplink.Uplink(cfg, {"serial": "FLASH-1", "kid": 1, "device_key": DEVICE_KEY}, d)
    up._next_seq()
    return d + "/uplink.seq", up._next_seq


def _site_down_seq(d):
    st = downlink.DownState(d + "/down.seq")
    st.accept(1)
    return d + "/down.seq", lambda: st.accept(2)


SITES = {"down seq": _site_down_seq, "spool batch": _site_spool_batch,
         "spool last": _site_spool_last, "spool epoch": _site_spool_epoch,
         "devices": _site_devices, "statics": _site_statics, "delta": _site_delta, "uplink seq": _site_uplink_seq}

# module -> the atomic_write calls it holds; a new write site fails test_every_write_site_is_covered
# until it is added here and to SITES.
WRITES = {"spool.py": 3, "devstate.py": 2, "delta.py": 1, "uplink.py": 1, "downlink.py": 1}


def _fail(op, errno, hits):
    def fault(o, path):
        if o == op:
            hits.append(path)
            return errno
        return 0
    return fault


def test_every_write_site_fails_cleanly_and_recovers():
    tried = 0
    for name in sorted(SITES):
        for op in OPS:
            for errno in ERRNOS:
                d = _fresh("site")
                target, write = SITES[name](d)
                state = target if callable(target) else (lambda path=target: _read(path))
                before = state()
                hits = []
                port.set_flash_fault(_fail(op, errno, hits))
                try:
                    write()
                except OSError as e:
                    assert e.args[0] == errno, (name, op, e)
                except uplink.UplinkError as e:
                    # nothing is sent under a number that was not saved: the drain backs off
                    assert name == "uplink seq" and "sequence number" in str(e), (name, e)
                finally:
                    port.set_flash_fault(None)
                assert hits, (name, op)   # the fault was on this site's way to flash
                if name == "spool batch" and errno == port.ENOSPC:
                    # full: the spool tries to make room by its order (here, noting the evicted newest
                    # id fails on the same full flash, so the batch stays)
                    assert state() in ([], before), state()
                else:
                    assert state() == before, (name, op, errno)
                assert _tmp_files(d) == [], (name, op, errno, _tmp_files(d))
                write()                   # the flash works again: so does the site
                assert state() not in (None, [], before), (name, op, errno)
                tried += 1
    assert tried == len(SITES) * len(OPS) * len(ERRNOS)
    _rmtree("/tmp/fbflash-site")


def test_a_full_flash_evicts_by_the_spool_order():
    # ENOSPC while a batch goes in: the spool drops the least valuable batch and tries again.
    d = _fresh("full")
    s = Spool(d + "/spool")
    bulk = s.put(b"bulk", 0)
    counters = s.put(b"counters", 1)
    alerts = s.put(b"alerts", 2)
    left = [1]

    def full_once(op, path):
        if op == "open" and path.endswith(".tmp") and left[0]:
            left[0] -= 1
            return port.ENOSPC
        return 0
    port.set_flash_fault(full_once)
    try:
        new = s.put(b"more", 1)
    finally:
        port.set_flash_fault(None)
    assert s.ids() == [counters, alerts, new] and s.evicted_ids == [bulk]
    _rmtree(d)


def test_every_write_site_is_covered():
    root = _root() + "/firmware/fleetbox"
    found = {}
    for name in os.listdir(root):
        if not name.endswith(".py") or name in ("port.py", "atomicfile.py"):
            continue
        with open(root + "/" + name) as f:
            text = f.read()
        n = text.count("atomic_write(")
        if n:
            found[name] = n
        # any other way to write a file would bypass the injected faults
        for bypass in ('"w")', '"wb")', "os.rename(", "os.replace("):
            assert bypass not in text, (name, bypass)
    assert found == WRITES, found
