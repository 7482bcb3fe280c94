"""The update agent's outcome report after a staged firmware update (fleetbox.updagent.after_cycle),
on CPython and MicroPython: `confirmed` from the new slot, `reverted` with the loader's reason
(from the boot state) from the slot the box fell back to, nothing while the install resumes."""
import json
import sys

for _p in list(sys.path):
    if _p.endswith("/firmware") and _p + "/loader" not in sys.path:
        sys.path.append(_p + "/loader")      # bootstate: on the loader partition

import bootstate as bs  # noqa: E402
from check import LogCapture, fresh_dir, rmtree, tmp  # noqa: E402
from fleetbox import port, updagent  # noqa: E402
from test_bootstate import RamFlash, Slots, _info, _quiet  # noqa: E402
from test_pack import _Agent, _Board, _Uplink  # noqa: E402

D = tmp("fbx-test-updagent")


class _FlashBoard(_Board):
    def __init__(self, d, slot, dev):
        _Board.__init__(self, d)
        self.slot = slot
        self.dev = dev

    def partition(self, name):
        assert name == "bootstate"
        return self.dev


def _agent(d, slot, dev, offer=None):
    agent = _Agent(_FlashBoard(d, slot, dev), {"serial": "x", "kid": 1, "device_key": "00" * 32}, _Uplink(),
                   "1.0", None)
    agent.sent = []
    agent.offer = offer
    return agent


def _staged(d, seq):
    with open(d + "/" + updagent.STAGED_FILE, "w") as f:
        json.dump({"rollout": 7, "image": "ab" * 32, "slot": "slot_b", "seq": seq}, f)


def test_a_crash_looped_update_is_reported_reverted_with_the_loaders_reason():
    d = fresh_dir(D)
    dev = RamFlash()
    store = bs.Store(dev)
    _staged(d, store.load().seq)
    bs.set_pending("slot_b", None, dev=dev)
    st = store.load()
    slots = Slots(_info(0), _info(0))
    bs.choose(st, None, slots, _quiet)              # the reboot into the trial
    for _n in range(bs.MAX_CRASH_BOOTS + 1):
        bs.choose(st, "watchdog", slots, _quiet)
    store.save(st)
    agent = _agent(d, "slot_a", dev)                # the box runs the slot it fell back to
    with LogCapture(port.INFO) as log:
        agent.after_cycle(False)
    assert agent.sent == [{"rollout": 7, "image": "ab" * 32, "state": "reverted", "reason": "crash_loop",
                           "detail": "the loader left slot_b: crash_loop"}], agent.sent
    assert "update of rollout 7 reverted [crash_loop]" in log.text()
    agent.after_cycle(False)
    assert len(agent.sent) == 1                     # reported once: the staged record is gone
    rmtree(D)


def test_a_confirmed_update_and_an_install_cut_before_the_switch():
    d = fresh_dir(D)
    dev = RamFlash()
    _staged(d, bs.Store(dev).load().seq)
    bs.set_pending("slot_b", None, dev=dev)
    agent = _agent(d, "slot_b", dev)
    agent.after_cycle(True)                          # still on trial: nothing yet
    assert agent.sent == []
    with LogCapture(port.INFO):
        agent.after_cycle(False)
    assert agent.sent == [{"rollout": 7, "image": "ab" * 32, "state": "confirmed"}], agent.sent
    # staged record written, boot state never switched (a cut): the offer resumes, no report
    d = fresh_dir(D)
    dev = RamFlash()
    _staged(d, bs.Store(dev).load().seq)
    agent = _agent(d, "slot_a", dev, offer={"image": "ab" * 32, "kind": "app", "version": "2.0"})
    agent.after_cycle(False)
    assert agent.sent == [] and agent.offer is not None
    rmtree(D)
