"""Boot state (firmware/loader/bootstate.py): the two-copy encoding and the loader's decisions.

Runs on CPython (pytest) and MicroPython (tests/mprun.py). The block device is a RAM
NOR flash: programming only clears bits, so a write without its erase shows.
"""
import sys

for _p in list(sys.path):
    if _p.endswith("firmware") and _p + "/loader" not in sys.path:
        sys.path.append(_p + "/loader")

import bootstate as bs  # noqa: E402
from check import raises  # noqa: E402

BLOCK = 4096
# The documented vector (docs/flash-layout.md, "Boot state"): slot_b on trial after one crash
# boot, security counter 7, sequence 5, slot_a verified once as version 1.2.0 (counter 7).
VECTOR = ("46424253" "01" "01" "01" "01" "00" "00" "00" "ff" "05000000" "07000000"
          + "11" * 32 + "07000000" + "312e322e30" + "00" * 15
          + "00" * 56
          + "33edeee9")


def _vector_state():
    st = bs.State()
    st.active, st.trial, st.crash_boots, st.seq, st.counter = 1, bs.PENDING, 1, 5, 7
    st.records[0] = (b"\x11" * 32, 7, "1.2.0")
    return st


class RamFlash:
    def __init__(self, blocks=2):
        self.mem = bytearray(b"\xff" * (blocks * BLOCK))
        self.erases = 0
        self.writes = 0

    def readblocks(self, n, buf, off=0):
        start = n * BLOCK + off
        buf[:] = self.mem[start:start + len(buf)]

    def writeblocks(self, n, buf, off=None):
        if off is None:
            self.ioctl(6, n)
            off = 0
        start = n * BLOCK + off
        self.writes += 1
        for i in range(len(buf)):
            self.mem[start + i] &= buf[i]

    def ioctl(self, op, arg):
        if op == 4:
            return len(self.mem) // BLOCK
        if op == 5:
            return BLOCK
        if op == 6:
            self.erases += 1
            self.mem[arg * BLOCK:(arg + 1) * BLOCK] = b"\xff" * BLOCK
            return 0
        return 0


def _info(counter=0, digest=b"\x22" * 32, version="2.0.0", full=True, **kw):
    d = {"digest": digest, "version": version, "counter": counter, "full": full}
    d.update(kw)
    return d


class Slots:
    """verify() for choose(): per slot an info dict, or an error string."""

    def __init__(self, a, b):
        self.slots = [a, b]
        self.calls = []

    def __call__(self, idx, record):
        self.calls.append((idx, record))
        s = self.slots[idx]
        if isinstance(s, str):
            raise bs.VerifyError(s)
        return dict(s)


def _quiet(msg):
    pass


def test_encoding_round_trips_and_matches_the_documented_vector():
    st = _vector_state()
    buf = bs.encode(st)
    assert len(buf) == bs.SIZE == 136
    import binascii
    assert binascii.hexlify(buf).decode() == VECTOR
    back = bs.decode(buf)
    assert (back.active, back.trial, back.crash_boots, back.seq, back.counter) == (1, bs.PENDING, 1, 5, 7)
    assert back.records == [(b"\x11" * 32, 7, "1.2.0"), None]
    assert bs.encode(back) == buf


def test_any_damage_to_a_copy_is_seen():
    good = bytes(bs.encode(_vector_state()))
    assert bs.decode(b"\xff" * bs.SIZE) is None          # erased
    assert bs.decode(good[:100] + b"\xff" * 36) is None  # torn: programming stopped part way
    for pos in (0, 5, 12, 40, 131, 133):
        bad = bytearray(good)
        bad[pos] ^= 0x04
        assert bs.decode(bad) is None, pos
    other = bytearray(good)
    other[4] = 2                                          # a format this loader does not know
    assert bs.decode(other) is None


def test_saves_alternate_between_the_blocks_and_the_newest_copy_wins():
    dev = RamFlash()
    store = bs.Store(dev)
    st = store.load()
    assert store.valid == 0 and st.active == 0 and st.counter == 0
    for n in range(1, 6):
        st.counter = n
        assert store.save(st)
        assert st.seq == n
        st2 = bs.Store(dev).load()
        assert (st2.seq, st2.counter) == (n, n)
    a, b = bs.decode(dev.mem[:bs.SIZE]), bs.decode(dev.mem[BLOCK:BLOCK + bs.SIZE])
    assert {a.seq, b.seq} == {4, 5}
    writes = dev.writes
    assert not store.save(st)                # unchanged: no flash wear
    assert dev.writes == writes


def test_a_damaged_newest_copy_falls_back_to_the_other():
    dev = RamFlash()
    store = bs.Store(dev)
    st = store.load()
    st.counter = 1
    store.save(st)           # seq 1, block 1
    st.counter = 2
    store.save(st)           # seq 2, block 0
    dev.mem[10] ^= 0xFF      # the newest copy rots
    store2 = bs.Store(dev)
    got = store2.load()
    assert (got.seq, got.counter, store2.valid) == (1, 1, 1)
    # The next save goes over the damaged block, not over the last good copy.
    got.counter = 3
    store2.save(got)
    assert bs.decode(dev.mem[BLOCK:BLOCK + bs.SIZE]).counter == 1
    assert bs.Store(dev).load().counter == 3
    dev.mem[BLOCK + 3] ^= 1
    dev.mem[3] ^= 1
    store3 = bs.Store(dev)
    fresh = store3.load()
    assert store3.valid == 0 and (fresh.active, fresh.trial) == (0, bs.CONFIRMED)


def test_a_cut_between_erase_and_program_keeps_the_previous_state():
    class CutFlash(RamFlash):
        def writeblocks(self, n, buf, off=None):
            raise OSError("power cut")
    dev = CutFlash()
    st = bs.State()
    st.counter = 9
    good = bs.encode(st)
    dev.mem[:bs.SIZE] = good          # seq 0 in block 0
    store = bs.Store(dev)
    st = store.load()
    st.counter = 10
    raises(OSError, store.save, st)   # block 1 erased, never programmed
    assert bs.Store(dev).load().counter == 9


def test_a_confirmed_slot_boots_and_raises_the_security_counter():
    st = bs.State()
    slots = Slots(_info(counter=4), "blank")
    assert bs.choose(st, "power-on", slots, _quiet)[0] == 0
    assert st.counter == 4 and st.records[0][1] == 4 and st.records[0][2] == "2.0.0"
    # The record goes to verify() next time, so it can skip the whole-slot check.
    bs.choose(st, "power-on", slots, _quiet)
    assert slots.calls[-1] == (0, st.records[0])


def test_a_staged_slot_boots_on_trial_and_confirm_ends_it():
    dev = RamFlash()
    st = bs.Store(dev).load()
    st.counter = 3
    bs.Store(dev).save(st)
    bs.set_pending("slot_b", {"digest": b"\x33" * 32, "counter": 5, "version": "3.0.0"}, dev=dev)
    store = bs.Store(dev)
    st = store.load()
    assert (st.active, st.trial) == (1, bs.STAGED)
    # The reboot into the new slot is the updater's (a software reset): it counts as no attempt.
    slot, info = bs.choose(st, "software", Slots(_info(1), _info(5, full=False)), _quiet)
    assert slot == 1 and st.trial == bs.PENDING and st.crash_boots == 0
    assert st.counter == 3                   # not raised before the confirmation
    store.save(st)
    assert bs.confirm("slot_a", dev=dev) is False   # not what the state says runs
    assert bs.confirm("slot_b", dev=dev) is True
    st = bs.Store(dev).load()
    assert (st.active, st.trial, st.counter) == (1, bs.CONFIRMED, 5)


def test_crash_boots_on_trial_revert_and_mark_the_slot_bad():
    st = bs.State()
    st.active, st.trial = 1, bs.PENDING
    slots = Slots(_info(0), _info(0))
    for n in range(bs.MAX_CRASH_BOOTS):
        assert bs.choose(st, ("watchdog", "software", "panic")[n % 3], slots, _quiet)[0] == 1
        assert st.crash_boots == n + 1
    logs = []
    assert bs.choose(st, "watchdog", slots, logs.append)[0] == 0
    assert (st.active, st.trial, st.reason, st.reverted_from) == (0, bs.CONFIRMED, bs.REASON_CRASH_LOOP, 1)
    assert st.bad == 2 and "crash loop" in logs[0]
    # The bad slot is not tried again, even when slot_a later fails: rescue instead.
    assert bs.choose(st, "power-on", Slots("rotten", _info(0)), _quiet) == (None, None)
    # Staging the slot anew clears the mark.
    dev = RamFlash()
    bs.Store(dev).save(st)
    assert bs.set_pending(1, None, dev=dev).bad == 0


def test_power_on_boots_on_trial_do_not_revert_a_good_image():
    st = bs.State()
    st.active, st.trial = 1, bs.PENDING
    slots = Slots(_info(0), _info(0))
    for _n in range(bs.MAX_POWER_BOOTS):
        assert bs.choose(st, "power-on", slots, _quiet)[0] == 1
    assert (st.trial, st.crash_boots, st.power_boots) == (bs.PENDING, 0, bs.MAX_POWER_BOOTS)
    # A trial that never confirms does end, bounded: one more power-on boot reverts it.
    assert bs.choose(st, "power-on", slots, _quiet)[0] == 0
    assert st.reason == bs.REASON_UNCONFIRMED


def test_retries_within_one_boot_count_no_attempt():
    st = bs.State()
    st.active, st.trial = 1, bs.PENDING
    bs.choose(st, None, Slots(_info(0), _info(0)), _quiet)
    assert st.crash_boots == st.power_boots == 0


def test_an_older_security_counter_is_refused_unless_a_signed_recovery():
    st = bs.State()
    st.counter = 5
    st.active, st.trial = 1, bs.PENDING
    logs = []
    slot, _ = bs.choose(st, "power-on", Slots(_info(5), _info(4)), logs.append)
    assert slot == 0 and st.active == 0 and st.reason == bs.REASON_ROLLBACK and st.reverted_from == 1
    assert any("security counter 4 is below 5" in m for m in logs)
    st.active = 1
    assert bs.choose(st, None, Slots(_info(5), _info(4, recovery=True)), _quiet)[0] == 0  # unsigned claim
    st.active = 1
    assert bs.choose(st, None, Slots(_info(5), _info(4, recovery=True, signed=True)), _quiet)[0] == 1
    assert st.counter == 5                   # a recovery never lowers the counter


def test_an_unverifiable_slot_falls_back_and_none_means_rescue():
    st = bs.State()
    st.records[0] = (b"\x44" * 32, 0, "1.0")
    slot, info = bs.choose(st, "power-on", Slots("file fleetbox/main.mpy does not match", _info(0)), _quiet)
    assert slot == 1 and st.active == 1 and st.trial == bs.CONFIRMED
    assert st.reason == bs.REASON_UNVERIFIABLE and st.records[0] is None
    assert bs.choose(st, "power-on", Slots("blank", "blank"), _quiet) == (None, None)


def test_a_slot_that_will_not_run_is_left_like_a_failed_trial():
    st = bs.State()
    bs.not_runnable(st, 0, _quiet)
    assert (st.active, st.bad, st.reason) == (1, 1, bs.REASON_NOT_RUNNABLE)


def test_left_names_why_the_loader_left_a_slot():
    st = bs.State()
    st.active, st.trial, st.seq = 1, bs.PENDING, 4
    assert bs.left(st, 1) is None and bs.left(st, 0) is None
    slots = Slots(_info(0), _info(0))
    for _n in range(bs.MAX_CRASH_BOOTS + 1):
        bs.choose(st, "panic", slots, _quiet)
    assert bs.left(st, 1) == "crash_loop" and bs.left(st, 0) is None
    # a fall-back (not a failed trial: no bad mark) counts only when written after the staging
    st = bs.State()
    st.seq = 9
    bs.choose(st, "power-on", Slots("blank", _info(0)), _quiet)
    assert st.reverted_from == 0 and not st.bad
    assert bs.left(st, 0, since_seq=8) == "unverifiable" and bs.left(st, 0, since_seq=9) is None
    st = bs.State()
    bs.not_runnable(st, 0, _quiet)
    assert bs.left(st, 0) == "not_runnable"
    assert len(bs.REVERT_CODES) == len(bs.REASONS)


def test_the_app_confirms_only_after_contact_and_a_whole_cycle():
    dev = RamFlash()
    bs.set_pending("slot_b", None, dev=dev)
    store = bs.Store(dev)
    st = store.load()
    bs.choose(st, "software", Slots(_info(0), _info(0)), _quiet)
    store.save(st)
    trial = bs.Trial("slot_b", deadline_s=1000, dev=dev, log=_quiet)
    assert trial.pending
    assert trial.after_cycle(True, False) is False      # collected, no cloud yet
    assert trial.after_cycle(False, True) is False      # cloud, but no collection this cycle
    assert bs.Store(dev).load().trial == bs.PENDING
    assert trial.after_cycle(True, True) is False
    assert bs.Store(dev).load().trial == bs.CONFIRMED and not trial.pending
    assert bs.Trial("slot_b", dev=dev, log=_quiet).pending is False


def test_a_trial_past_its_deadline_asks_for_a_reboot():
    dev = RamFlash()
    bs.set_pending("slot_a", None, dev=dev)
    store = bs.Store(dev)
    st = store.load()
    bs.choose(st, "power-on", Slots(_info(0), _info(0)), _quiet)
    store.save(st)
    trial = bs.Trial("slot_a", deadline_s=-1, dev=dev, log=_quiet)
    assert trial.after_cycle(True, False) is True
    assert bs.Store(dev).load().trial == bs.PENDING
