"""Flash faults at every write site of the firmware (CPython and MicroPython).

Every write the firmware makes on the data partition goes through port's file functions
(open_write, close_write, rename: fleetbox.atomicfile). A fault installed there
(port.set_flash_fault, as the sim board's flash switch does) fails one step with ENOSPC
or EIO; each site then either raises OSError or carries on, and in both cases leaves
the file it was replacing as it was and no temporary file behind.
"""
import os
import sys
from binascii import b2a_base64, hexlify, unhexlify

from fleetbox import cbor, config, delta, devstate, downlink, envelope, pack, port, provision, updagent, updater, uplink
from check import fresh_dir, raises, rmtree
from fleetbox.spool import Spool
from test_updater import IDENT, NOW, DirSlot, _offer, _source
from test_updater import _root as _update_root

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


# a directory of this run's own: other checkouts on the machine run these tests at the same time
_RUN = hexlify(port.urandom(4)).decode()


def _fresh(name):
    return fresh_dir("/tmp/fbflash-%s-%s" % (name, _RUN))


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
    st.remember(1)
    return d + "/down.seq", lambda: st.remember(2)


# -- provisioning: the envelope key, the configuration, the provisioning state
CFG = {"endpoints": [{"url": "https://127.0.0.1:8443/v1/upload"}], "ca": "MAIFAA==", "pins": ["00" * 32]}
PROV_ID = {"serial": "FLASH-P", "key": "MAIFAA==", "cert": "MAIFAA==", "ca": "MAIFAA==", "pins": ["00" * 32],
           "provision": [{"name": "a", "url": "https://127.0.0.1:8443/v1/provision"}]}


def _provisioner(d):
    p = provision.Provisioner(PROV_ID, d)
    p._take_key({"kid": 1, "key": DEVICE_KEY})
    return p


def _site_prov_keys(d):
    p = _provisioner(d)
    return d + provision.KEYS, lambda: p._take_key({"kid": 2, "key": "11" * 32})


def _site_prov_config(d):
    p = _provisioner(d)
    seq = [0]

    def apply(version):
        # each answer comes under a new down seq, as the cloud sends it again at the next contact
        seq[0] += 1
        body = cbor.dumps({"config": {"v": version, "body": dict(CFG, http_timeout_s=10 + version)}})
        sealed = envelope.seal(unhexlify(DEVICE_KEY), 1, PROV_ID["serial"], seq[0], 1767232801, body,
                               downlink.CT_ANSWER, direction=envelope.DOWN)
        assert p._take_config(b2a_base64(sealed).decode().strip()) == "updated"
    apply(1)
    # only the configuration's own write fails (the down seq before it has its own site)
    return d + provision.CONFIG, lambda: apply(2), d + provision.CONFIG


def _site_prov_state(d):
    p = _provisioner(d)
    p._save_state()

    def refused():
        p.state["refused"] = {"version": p.state.get("version", 0) + 1, "reason": "test"}
        p._save_state()
    return d + provision.STATE, refused


# -- updates: the offer and the staged record (updagent), the resume record, the cut of a file
# longer than that record, the slot's signature and manifest (updater)
OFFER = {"rollout": 1, "image": "ab" * 32, "url": "/v1/updates/images/1", "size": 1000, "version": "1.3.0",
         "kind": "app", "wrap": "{}"}


class _Board:
    def __init__(self, d):
        self.data_dir = d


class _Uplink:
    on_offer = None


def _site_offer(d):
    a = updagent.Agent(_Board(d), {}, _Uplink(), "1.2.0")
    a.take(OFFER)
    return d + "/" + updagent.OFFER_FILE, lambda: a.take(dict(OFFER, rollout=2, image="cd" * 32))


class _NoConnection:
    def close(self):
        pass


class _StagingAgent(updagent.Agent):
    """An agent whose installer staged its slot: what it records and reports after that."""

    class _Installer:
        class slot:
            name = "slot_b"

        def __init__(self, agent):
            self.agent = agent

        def run(self, source, offer, progress=None):
            # as updater.Installer.run: staging (the agent's staged record first) failing is an interruption
            try:
                self.agent._write_staged("slot_b", 0)
            except OSError as e:
                return {"image": offer["image"], "state": "interrupted", "detail": repr(e)}
            return {"image": offer["image"], "state": "staged", "version": offer["version"]}

    def _installer(self):
        return self._Installer(self)

    def send(self, report):
        self.sent.append(report)


def _site_staged(d):
    up = _Uplink()
    up.active = 0
    up._conn = lambda i: _NoConnection()
    a = _StagingAgent(_Board(d), {}, up, "1.2.0")
    a.sent = []
    a.take(OFFER)
    a.run()

    def stage_next():
        if a.offer is None:
            a.take(dict(OFFER, rollout=2, image="cd" * 32))
        a.run()
    return d + "/" + updagent.STAGED_FILE, stage_next


def _update(d, cut):
    """An installer whose resume record in d says how far an install into d/slot got."""
    inst = updater.Installer(_update_root(), IDENT, DirSlot(d + "/slot"), d, "sim", "1.2.0", 3, 1, min_time=NOW,
                             stage=lambda name, info: None)
    offer = _offer()[0]
    assert inst.run(_source(cut=cut), offer)["state"] == "interrupted"
    return inst, offer


def _site_resume(d):
    inst, offer = _update(d, 1)
    # run() reports a flash fault as an interruption: it resumes from the record it kept
    return d + "/update.resume", lambda: inst.run(_source(cut=1), offer)


def _site_cut(d):
    inst, _ = _update(d, 3)
    # a power cut after a file write, before the record: bytes beyond the record
    path = d + "/slot/fleetbox/beta.mpy"
    with open(path, "ab") as f:
        f.write(b"garbage past the resume record")
    pos = inst.load_resume()["next"] * 1024
    return path, lambda: updater.SlotWriter(d + "/slot", "sim").resume_at(pos, bytearray(512))


def _site_slot_file(name):
    def site(d):
        inst, offer = _update(d, 6)            # the last of 7 chunks, then the slot is finished
        return d + "/slot/" + name, lambda: inst.run(_source(), offer), d + "/slot/" + name
    return site


def _site_pack_pointer(d):
    # the switch of a pack: one atomic rewrite of the pointer, after the new folder checked whole
    from test_pack import _install, _packs
    with open(d + "/builtin.json", "w") as f:
        f.write('{"format":1,"profiles":0}\n')
    packs = _packs(d)
    _install(packs, d)
    return d + "/pack/" + pack.POINTER, lambda: _install(packs, d), d + "/pack/" + pack.POINTER


def _site_pack_floor(d):
    # the pack floor on the loader partition: raised before the pointer names a newer pack
    from test_pack import LOADER, _install, _packs, _write_floor
    with open(d + "/builtin.json", "w") as f:
        f.write('{"format":1,"profiles":0}\n')
    packs = _packs(d)
    _write_floor("6", 1)               # as an older pack left it
    floor = LOADER + "/pack.floor"
    return floor, lambda: _install(packs, d), floor


def _site_append(d):
    inst, offer = _update(d, 1)
    # the slot file the next chunk goes on (appended to, no temporary file: the resume record
    # says how much of it counts); the record must not move past a failed append
    w = updater.SlotWriter(d + "/slot", "sim")
    w._load_head()
    pos, start, name = inst.load_resume()["next"] * 1024, 0, None
    for region, size in w.regions:
        if name is None and pos < start + size:
            name = region
        start += size
    return d + "/update.resume", lambda: inst.run(_source(cut=1), offer), d + "/slot/" + name


def _slot_state(d):
    return lambda: (sorted(os.listdir(d + "/slot")), _read(d + "/update.resume"))


def _site_remove_stray(d):
    inst, _ = _update(d, 3)
    # a region's file that a power cut left beyond the resume record: the resume removes it
    stray = d + "/slot/" + updater.TAIL_FILE
    with open(stray, "wb") as f:
        f.write(b"\0" * 32)
    pos = inst.load_resume()["next"] * 1024
    return _slot_state(d), lambda: updater.SlotWriter(d + "/slot", "sim").resume_at(pos, bytearray(512)), stray


def _site_remove_head(d):
    inst, offer = _update(d, 6)
    head = d + "/slot/" + updater.HEAD_FILE
    # the finished slot keeps no unpacking head: the signature and manifest written before it stay
    return lambda: _exists(head), lambda: inst.run(_source(), offer), head


SITES = {"pack pointer": _site_pack_pointer, "pack floor": _site_pack_floor,
         "prov keys": _site_prov_keys, "prov config": _site_prov_config, "prov state": _site_prov_state,
         "update offer": _site_offer, "update staged": _site_staged, "update resume": _site_resume,
         "update cut": _site_cut, "update signature": _site_slot_file(updater.SIG_FILE),
         "update manifest": _site_slot_file(updater.MANIFEST_FILE), "update append": _site_append,
         "update remove stray": _site_remove_stray, "update remove head": _site_remove_head}
# the sites whose writes are no replacement by a temporary file: the flash steps they take
SITE_OPS = {"update append": ("open", "close"), "update remove stray": ("remove",),
            "update remove head": ("remove",)}
SITES.update({"down seq": _site_down_seq, "spool batch": _site_spool_batch,
         "spool last": _site_spool_last, "spool epoch": _site_spool_epoch,
         "devices": _site_devices, "statics": _site_statics, "delta": _site_delta, "uplink seq": _site_uplink_seq})

# module -> the atomic_write calls it holds; a new write site fails test_every_write_site_is_covered
# until it is added here and to SITES.
WRITES = {"spool.py": 3, "devstate.py": 2, "delta.py": 1, "uplink.py": 1, "downlink.py": 1, "provision.py": 3,
          "updagent.py": 2, "updater.py": 4, "pack.py": 2}


def _fail(op, errno, hits, only=None):
    def fault(o, path):
        if o == op and (only is None or path in (only, only + ".tmp")):
            hits.append(path)
            return errno
        return 0
    return fault


def test_every_write_site_fails_cleanly_and_recovers():
    tried = 0
    for name in sorted(SITES):
        for op in SITE_OPS.get(name, OPS):
            for errno in ERRNOS:
                d = _fresh("site")
                site = SITES[name](d)
                target, write = site[0], site[1]
                only = site[2] if len(site) > 2 else None     # the one file faults hit, when others come first
                state = target if callable(target) else (lambda path=target: _read(path))
                before = state()
                hits = []
                port.set_flash_fault(_fail(op, errno, hits, only))
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
                    # full: the spool makes room by its order (a flash this full evicts the one batch
                    # there and still cannot take the new one)
                    assert state() == [], state()
                else:
                    assert state() == before, (name, op, errno)
                assert _tmp_files(d) == [], (name, op, errno, _tmp_files(d))
                write()                   # the flash works again: so does the site
                assert state() not in (None, [], before), (name, op, errno)
                tried += 1
    assert tried == sum(len(SITE_OPS.get(name, OPS)) for name in SITES) * len(ERRNOS)
    rmtree(_fresh("site"))


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
    rmtree(d)


def _full_until_removed(s):
    """ENOSPC on every write until a batch of spool s is removed: a flash full of batches."""
    state = {"full": True, "refused": 0}

    def fault(op, path):
        if op == "remove" and path.startswith(s.dir) and path.endswith(".b"):
            state["full"] = False
        elif state["full"] and op in ("open", "close", "rename"):
            state["refused"] += 1
            return port.ENOSPC
        return 0
    return fault, state


def test_a_full_flash_notes_the_evicted_id_in_the_room_it_frees():
    # The newest batch is the victim, and noting its id needs room the flash does not have yet.
    d = _fresh("note")
    s = Spool(d + "/spool")
    first = s.put(b"bulk", 0)
    fault, state = _full_until_removed(s)
    port.set_flash_fault(fault)
    try:
        new = s.put(b"counters", 1)
    finally:
        port.set_flash_fault(None)
    assert state["refused"] >= 2, state      # the batch, then the note before freeing
    assert s.ids() == [new] and s.evicted_ids == [first] and new > first
    assert _read(d + "/spool/last") == str(first).encode()
    s.ack(new)
    assert Spool(d + "/spool").put(b"next") == new + 1    # ids never repeat across a reopen
    rmtree(d)


def test_a_flash_that_stays_full_evicts_a_bounded_amount_and_never_repeats_an_id():
    d = _fresh("stuck")
    s = Spool(d + "/spool")
    big = b"x" * (20 * 1024)
    ids = [s.put(big, 0) for _ in range(6)]
    port.set_flash_fault(lambda op, path: port.ENOSPC if op != "remove" else 0)
    try:
        e = raises(OSError, s.put, b"more", 1)
    finally:
        port.set_flash_fault(None)
    assert e.args[0] == port.ENOSPC
    # past FULL_EVICT_BYTES freed the flash is failing, not full of batches: the rest stays
    assert s.evicted_ids == ids[:4] and s.ids() == ids[4:], (s.evicted_ids, s.ids())
    assert s.put(b"later", 1) == ids[-1] + 2     # the refused put's id is not reused either
    rmtree(d)


def test_the_newest_id_evicted_on_a_failing_flash_is_noted_at_the_next_chance():
    d = _fresh("unnoted")
    s = Spool(d + "/spool")
    old, newest = s.put(b"a", 2), s.put(b"b" * (70 * 1024), 0)     # the newest alone frees enough
    port.set_flash_fault(lambda op, path: port.ENOSPC if op != "remove" else 0)
    try:
        raises(OSError, s.put, b"c", 1)
    finally:
        port.set_flash_fault(None)
    assert s.ids() == [old] and s.evicted_ids == [newest]
    s.ack(old)      # an upload's acknowledgement, with room again: the id is noted then
    assert _read(d + "/spool/last") == str(newest).encode()
    assert Spool(d + "/spool").put(b"d") > newest     # (the refused put's id never reached flash)
    rmtree(d)


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
        for bypass in ('"w")', '"wb")', '"ab")', "os.rename(", "os.replace(", "os.remove(", "os.rmdir("):
            assert bypass not in text, (name, bypass)
    assert found == WRITES, found
