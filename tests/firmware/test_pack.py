"""Collection-intelligence packs on the box (fleetbox.pack), on CPython and MicroPython: the
vector pack (docs/vectors/update/pack.fbu) installed into the pack area through the updater,
checked at every load, a tampered or truncated pack refused at load with the previous one
(or the firmware's own profiles) in force, older packs and wrong kinds refused, and the
update agent's reports."""
import json
import os
import sys

for _p in list(sys.path):
    if _p.endswith("/firmware") and _p + "/loader" not in sys.path:
        sys.path.append(_p + "/loader")      # bootstate: the agent reads the loader's version

from check import LogCapture, fresh_dir, rmtree, tmp  # noqa: E402
from fleetbox import pack, port, profiles, provision, updagent, updater, updimage  # noqa: E402
from test_updater import DirSlot  # noqa: E402
from vectors import DIR, expected, load  # noqa: E402

V = expected()
IDENT = V["identity"]
NOW = V["created"] + 86400
PACK = json.loads(load("pack.json"))
D = tmp("fbx-test-pack")
LOADER = tmp("fbx-test-pack-loader")      # the loader partition: a factory reset does not touch it
BUILTIN = '{"format":1,"profiles":1}\n{"descr":[],"enterprises":[99998],"vendor":"Builtin"}\n'


class Bytes:
    def __init__(self, data):
        self.data = data

    def fetch(self, offset, length):
        return self.data[offset:offset + length]


def _root():
    return updimage.load_root(load("root-1.fbr"), None, NOW)


def _fresh():
    fresh_dir(LOADER)
    d = fresh_dir(D)
    with open(d + "/builtin.json", "w") as f:
        f.write(BUILTIN)
    return d


def _packs(d):
    try:
        os.mkdir(LOADER)
    except OSError:
        pass        # there already
    return pack.Packs(d, builtin=d + "/builtin.json", root_file=DIR + "root-1.fbr", floor_file=LOADER + "/pack.floor")


def _offer(image="pack.fbu", wrap="pack.fbw"):
    return {"image": PACK["image_digest"] if image == "pack.fbu" else None, "wrap": load(wrap).decode()}


def _install(packs, d, image="pack.fbu", wrap="pack.fbw", rollout=5):
    packs.load()
    inst = packs.installer(_root(), IDENT, d, 1, NOW, rollout)
    with LogCapture(port.INFO) as log:
        report = inst.run(Bytes(load(image)), _offer(image, wrap))
    return report, log.text(), inst


def _flip(path, at):
    with open(path, "rb") as f:
        b = bytearray(f.read())
    b[at] ^= 0x01
    with open(path, "wb") as f:
        f.write(b)


def test_install_then_load_uses_the_pack():
    d = _fresh()
    packs = _packs(d)
    assert packs.load().vendors() == ["Builtin"] and packs.in_use is None
    report, log, inst = _install(packs, d)
    assert report["state"] == "staged" and report["version"] == "7", (report, log)
    assert inst.slot.path == d + "/pack/a" and packs.changed
    assert "pack 7 (1 profiles) installed in a" in log, log
    with open(d + "/pack/use.json") as f:
        ptr = json.load(f)
    assert ptr == {"use": "a", "version": "7", "counter": 2, "rollout": 5, "image": PACK["image_digest"]}, ptr
    with open(d + "/pack/a/profiles.json", "rb") as f:
        import hashlib
        from binascii import hexlify
        assert hexlify(hashlib.sha256(f.read()).digest()).decode() == PACK["profiles_json_sha256"]
    lib = packs.load()
    assert not packs.changed and packs.in_use == "a" and (packs.version, packs.counter) == ("7", 2)
    assert lib.vendors() == ["Example"], lib.vendors()
    # a rule only the pack has: the example's counter OID, read from the pack's file
    p = profiles.match(lib, "1.3.6.1.4.1.99999.1", "")
    counters, sources = {}, {}
    profiles.counters(p, {"get": {"1.3.6.1.4.1.99999.2.1.0": 4242}}, counters, sources)
    assert counters.get("total") == 4242, counters
    # the next install goes beside the pack in force, never over it
    assert packs.target().path == d + "/pack/b"
    rmtree(D)


def test_tampered_or_truncated_pack_on_flash_falls_back_and_is_reported():
    for damage, reason in (("profiles.json", "bad_chunk"), ("update.sig", "bad_signature"),
                           ("manifest.json", "bad_chunk"), ("cut", "bad_chunk"), ("gone", "bad_format")):
        d = _fresh()
        packs = _packs(d)
        _install(packs, d)
        path = d + "/pack/a/"
        if damage == "cut":
            with open(path + "profiles.json", "rb") as f:
                data = f.read()
            with open(path + "profiles.json", "wb") as f:
                f.write(data[:-40])
        elif damage == "gone":
            os.remove(path + "payload.tail")
        else:
            _flip(path + damage, 100)
        with LogCapture(port.INFO) as log:
            lib = packs.load()
        assert lib.vendors() == ["Builtin"] and packs.in_use is None, (damage, log.text())
        assert "pack in a refused at load [%s]" % reason in log.text(), (damage, log.text())
        assert packs.problems == [{"rollout": 5, "image": PACK["image_digest"], "state": "reverted",
                                   "reason": reason, "detail": packs.problems[0]["detail"]}], (damage, packs.problems)
        # the counter stays: the damaged pack's version is not offered a way back below it
        assert (packs.version, packs.counter) == ("7", 2)
    rmtree(D)


def test_the_previous_pack_stays_in_force_when_the_new_one_is_damaged():
    d = _fresh()
    packs = _packs(d)
    _install(packs, d)
    packs.load()
    report, log, inst = _install(packs, d)            # the same version again: allowed, it repairs
    assert report["state"] == "staged" and inst.slot.path == d + "/pack/b", log
    assert packs.load().vendors() == ["Example"] and packs.in_use == "b"
    _flip(d + "/pack/b/profiles.json", 100)
    with LogCapture(port.INFO) as log:
        lib = packs.load()
    assert lib.vendors() == ["Example"] and packs.in_use == "a", log.text()
    assert "refused at load" in log.text() and "profiles: pack 7 (1 profiles) from a" in log.text()
    # the pointer is gone too: the newest pack that verifies is used
    os.remove(d + "/pack/use.json")
    packs.problems = []
    assert packs.load().vendors() == ["Example"] and packs.in_use == "a" and packs.problems == []
    # and the next install goes to b, the folder not in force
    assert packs.target().letter == "b"
    rmtree(D)


def test_older_pack_and_wrong_kinds_are_refused():
    d = _fresh()
    packs = _packs(d)
    _install(packs, d)
    with open(d + "/pack/use.json") as f:
        ptr = json.load(f)
    for version, counter, reason in (("8", 2, "older_version"), ("7", 3, "security_counter")):
        with open(d + "/pack/use.json", "w") as f:
            json.dump(dict(ptr, version=version, counter=counter), f)
        report, log, _ = _install(packs, d)
        assert report["state"] == "refused" and report["reason"] == reason, report
        assert "update refused [%s]" % reason in log
    # an app image offered to the pack area, and the pack offered to a firmware slot
    report, log, _ = _install(packs, d, "app.fbu", "app.fbw")
    assert report["reason"] == "wrong_board", report
    slot = DirSlot(D + "/slot")
    inst = updater.Installer(_root(), IDENT, slot, d, "sim", "1.0.0", 0, 1, min_time=NOW)
    with LogCapture(port.INFO):
        report = inst.run(Bytes(load("pack.fbu")), _offer())
    assert report["reason"] == "wrong_board", report
    # the pack in force did not move
    with open(d + "/pack/use.json", "w") as f:
        json.dump(ptr, f)
    assert packs.load().vendors() == ["Example"] and packs.in_use == "a"
    rmtree(D)


class _Board:
    name = "sim"
    slot = "slot_a"

    def __init__(self, d):
        self.data_dir = d

    def feed_watchdog(self):
        pass


class _Uplink:
    on_offer = None
    active = 0
    stats = {}

    def _conn(self, i):
        return _Conn()


class _Conn:
    """The agent closes the connection after a download (the bytes come from updater.RangeSource here)."""

    def close(self):
        pass


class _Agent(updagent.Agent):
    """The agent with the vector image as its download and its reports kept."""

    def send(self, report):
        self.sent.append(report)


def test_agent_installs_a_pack_without_reboot_and_reports_a_damaged_one():
    d = _fresh()
    packs = _packs(d)
    packs.load()
    agent = _Agent(_Board(d), IDENT, _Uplink(), "1.2.0", packs)
    agent.sent = []
    root, real_source = updagent.ROOT_FILE, updater.RangeSource
    updagent.ROOT_FILE = DIR + "root-1.fbr"
    updater.RangeSource = lambda conn, url: Bytes(load("pack.fbu"))
    try:
        agent.take({"rollout": 9, "image": PACK["image_digest"], "url": "/v1/updates/images/x", "size": 100,
                    "version": "7", "kind": "pack", "wrap": load("pack.fbw").decode()})
        with LogCapture(port.INFO):
            assert agent.run() is False          # no reboot: in force from the next cycle
    finally:
        updagent.ROOT_FILE, updater.RangeSource = root, real_source
    assert agent.sent == [{"image": PACK["image_digest"], "state": "installed", "version": "7", "rollout": 9}], \
        agent.sent
    assert agent.offer is None and agent._load(updagent.STAGED_FILE) is None and packs.changed
    assert packs.load().vendors() == ["Example"]
    _flip(d + "/pack/a/profiles.json", 50)
    with LogCapture(port.INFO):
        assert packs.load().vendors() == ["Builtin"]
        agent.after_cycle(False)
    assert agent.sent[-1]["state"] == "reverted" and agent.sent[-1]["rollout"] == 9 and \
        agent.sent[-1]["reason"] == "bad_chunk", agent.sent
    assert packs.problems == []
    rmtree(D)


def _write_floor(version, counter):
    with open(LOADER + "/pack.floor", "w") as f:
        json.dump({"version": version, "counter": counter}, f)


def test_a_factory_reset_keeps_the_pack_floor():
    d = _fresh()
    packs = _packs(d)
    _install(packs, d)
    assert packs.floor() == ("7", 2)
    with LogCapture(port.INFO):
        assert provision.factory_reset(d) is True
    assert os.listdir(d) == [] and os.listdir(LOADER) == ["pack.floor"]
    with open(d + "/builtin.json", "w") as f:
        f.write(BUILTIN)
    packs = _packs(d)
    assert packs.load().vendors() == ["Builtin"] and (packs.version, packs.counter) == ("0", 0)
    # the reset box takes the same pack again, never one below the floor a newer pack left
    for version, counter, reason in (("8", 2, "older_version"), ("7", 3, "security_counter")):
        _write_floor(version, counter)
        report, log, _ = _install(packs, d)
        assert report["state"] == "refused" and report["reason"] == reason, (report, log)
        assert not port.listdir(d + "/pack"), "nothing installed"
    _write_floor("6", 1)
    report, log, _ = _install(packs, d)
    assert report["state"] == "staged" and packs.floor() == ("7", 2), (report, log)
    assert packs.load().vendors() == ["Example"]
    # a box without a floor (installed before one was kept) raises it at its next switch
    os.remove(LOADER + "/pack.floor")
    assert packs.floor() is None
    report, log, _ = _install(packs, d)
    assert report["state"] == "staged" and packs.floor() == ("7", 2), (report, log)
    rmtree(D)


def test_a_target_that_cannot_be_emptied_interrupts_the_install():
    d = _fresh()
    packs = _packs(d)
    _install(packs, d)
    _install(packs, d)              # both folders hold the pack: the next target (a) must be emptied
    packs.load()
    assert packs.in_use == "b"

    def fault(op, path):
        return port.EIO if op == "remove" and path == d + "/pack/a/profiles.json" else 0
    port.set_flash_fault(fault)
    try:
        report, log, _ = _install(packs, d)
    finally:
        port.set_flash_fault(None)
    assert report["state"] == "interrupted", (report, log)
    # every other file went, the one the flash refused stayed; the pack in force did not move
    assert sorted(os.listdir(d + "/pack/a")) == ["profiles.json"], os.listdir(d + "/pack/a")
    assert packs.load().vendors() == ["Example"] and packs.in_use == "b"
    report, log, _ = _install(packs, d)      # the flash works again: the install goes through
    assert report["state"] == "staged", (report, log)
    rmtree(D)
