"""Boot state: which slot boots, whether it is on trial, and the anti-rollback counter.

It lives on its own raw `bootstate` partition (a factory reset wipes `data`, not this),
two erase blocks, one copy in each, written alternately with a sequence number and a
CRC-32 (as esp-idf's otadata): a power cut while one copy is written leaves the other.
Byte layout and the boot sequence: docs/flash-layout.md, "Boot state".

The loader (boot.py) decides with `choose`; the app confirms its trial with `Trial`
(or `confirm`); the updater stages a new slot with `set_pending`. This module sits on
the loader partition, so it is never updated in the field and imports only built-ins.
"""
import binascii
import struct
import time

SLOTS = ("slot_a", "slot_b")
LOADER_VERSION = 1         # what an image's min_loader is compared with (docs/update-image.md)
MAGIC = b"FBBS"
FORMAT = 1
# magic, format, active, trial, crash boots, power boots, bad slots, revert reason,
# reverted from, sequence, security counter
HEAD = "<4sBBBBBBBBII"
HEAD_SIZE = 20
RECORD = "<32sI20s"     # verified-once record: manifest SHA-256, security counter, version
RECORD_SIZE = 56
CRC_AT = HEAD_SIZE + 2 * RECORD_SIZE     # 132
SIZE = CRC_AT + 4                        # 136

CONFIRMED = 0
PENDING = 1      # booted on trial, not yet confirmed
STAGED = 2       # set by the updater, not booted yet: the reboot into it counts as no attempt
NO_SLOT = 0xFF

# Why the loader left a slot (kept in the state, printed at boot).
REASON_NONE = 0
REASON_CRASH_LOOP = 1      # too many crash boots while on trial
REASON_UNCONFIRMED = 2     # too many boots without the firmware confirming
REASON_UNVERIFIABLE = 3    # the slot failed verification
REASON_ROLLBACK = 4        # the slot's security counter is below the stored one
REASON_NOT_RUNNABLE = 5    # verified, but the application would not import
REASONS = ("none", "crash loop", "never confirmed", "failed verification", "security counter too low",
           "not runnable")
# the same, as a `reverted` update report names them (docs/update-protocol.md, section 4)
REVERT_CODES = ("none", "crash_loop", "never_confirmed", "unverifiable", "rollback", "not_runnable")

MAX_CRASH_BOOTS = 3        # crash resets tolerated on trial before the revert
TRIAL_DEADLINE_S = 3600   # a trial unconfirmed this long after boot reboots (one more attempt)
MAX_POWER_BOOTS = 10       # power-on boots tolerated on trial (a PoE blip is no verdict on the image)

# Reset causes, as rom.reset_cause() names them (docs/boards.md).
POWER_ON = "power-on"


class VerifyError(Exception):
    pass


class State:
    def __init__(self):
        self.active = 0
        self.trial = CONFIRMED
        self.crash_boots = 0
        self.power_boots = 0
        self.bad = 0              # bit per slot: a trial of it failed; never chosen until restaged
        self.reason = REASON_NONE
        self.reverted_from = NO_SLOT
        self.seq = 0
        self.counter = 0
        self.records = [None, None]   # per slot: (digest, counter, version) of a full verification

    def describe(self):
        s = "%s %s, security counter %d" % (SLOTS[self.active], ("confirmed", "on trial", "staged")[self.trial],
                                             self.counter)
        if self.trial:
            s += " (%d crash, %d power-on boots)" % (self.crash_boots, self.power_boots)
        if self.reverted_from != NO_SLOT:
            s += "; left %s: %s" % (SLOTS[self.reverted_from], REASONS[self.reason])
        return s


def _crc(buf, n):
    return binascii.crc32(memoryview(buf)[:n]) & 0xFFFFFFFF


def encode(st, buf=None):
    """The 136 bytes of one copy of `st` (into `buf` when given)."""
    if buf is None:
        buf = bytearray(SIZE)
    struct.pack_into(HEAD, buf, 0, MAGIC, FORMAT, st.active, st.trial, st.crash_boots, st.power_boots,
                     st.bad, st.reason, st.reverted_from, st.seq, st.counter)
    for i in (0, 1):
        r = st.records[i] or (b"\x00" * 32, 0, "")
        struct.pack_into(RECORD, buf, HEAD_SIZE + i * RECORD_SIZE, r[0], r[1], r[2].encode())
    struct.pack_into("<I", buf, CRC_AT, _crc(buf, CRC_AT))
    return buf


def decode(buf):
    """A State from one copy, or None when it is blank, torn or from another format."""
    if len(buf) < SIZE or bytes(buf[0:4]) != MAGIC or buf[4] != FORMAT:
        return None
    if struct.unpack_from("<I", buf, CRC_AT)[0] != _crc(buf, CRC_AT):
        return None
    st = State()
    (_, _, st.active, st.trial, st.crash_boots, st.power_boots, st.bad, st.reason, st.reverted_from,
     st.seq, st.counter) = struct.unpack_from(HEAD, buf, 0)
    if st.active > 1 or st.trial > STAGED:
        return None
    for i in (0, 1):
        digest, counter, version = struct.unpack_from(RECORD, buf, HEAD_SIZE + i * RECORD_SIZE)
        if digest != b"\x00" * 32:
            st.records[i] = (digest, counter, version.rstrip(b"\x00").decode())
    return st


class Store:
    """The two copies on a block device (readblocks/writeblocks/ioctl, as vfs uses them)."""

    def __init__(self, dev):
        self.dev = dev
        self.buf = bytearray(SIZE)
        self.written = None
        self.valid = 0            # copies that read back valid at the last load

    def _read(self, block):
        self.dev.readblocks(block, self.buf, 0)
        return decode(self.buf)

    def load(self):
        """The newest valid copy; a factory-fresh State when neither copy is valid."""
        best = None
        self.valid = 0
        for block in (0, 1):
            st = self._read(block)
            if st is not None:
                self.valid += 1
                if best is None or st.seq > best.seq:
                    best = st
        if best is None:
            best = State()
        else:
            self.written = bytes(encode(best, self.buf))
        return best

    def save(self, st):
        """Write `st` as the next copy, over the older one; nothing when it has not changed."""
        if self.written is not None and bytes(encode(st, self.buf)) == self.written:
            return False
        st.seq += 1
        block = st.seq & 1
        encode(st, self.buf)
        # Erase, then program: a cut in between leaves this block blank, the other copy valid.
        self.dev.ioctl(6, block)
        self.dev.writeblocks(block, self.buf, 0)
        self.written = bytes(self.buf)
        return True


def _revert(st, reason, log):
    failed = st.active
    st.bad |= 1 << failed
    st.active = 1 - failed
    st.trial = CONFIRMED
    st.crash_boots = st.power_boots = 0
    st.reason = reason
    st.reverted_from = failed
    log("reverting from %s to %s: %s" % (SLOTS[failed], SLOTS[st.active], REASONS[reason]))


def left(st, idx, since_seq=-1):
    """Why the loader left slot `idx`: a REVERT_CODES code when it marked the slot bad (a failed
    trial) or fell back from it in a state written after sequence `since_seq`; None when it did not.
    Whoever runs next (the app the box fell back to, or the rescue client) reports it."""
    if not (st.bad & (1 << idx) or (st.reverted_from == idx and st.seq > since_seq)):
        return None
    if st.reverted_from == idx and 0 < st.reason < len(REVERT_CODES):
        return REVERT_CODES[st.reason]
    return "reverted"


def recovery_allowed(info):
    """A slot below the security counter may boot only as a signed recovery.

    `info["recovery"]` is set only by the loader's signature check of a manifest that
    says so (boot.py, on a box with a trust anchor).
    """
    return bool(info.get("recovery")) and bool(info.get("signed"))


def choose(st, cause, verify, log=print):
    """Pick the slot to boot and update `st`; returns (slot index, info) or (None, None): rescue.

    cause: the reset cause (rom.reset_cause()), or None when the loader retries within one boot.
    verify(index, record) returns the slot's info {"digest", "version", "counter", "full"}
    or raises VerifyError; `record` is the slot's verified-once record (or None).
    """
    if st.trial == STAGED:
        st.trial = PENDING
    elif st.trial == PENDING and cause is not None:
        if cause == POWER_ON:
            st.power_boots += 1
        else:
            st.crash_boots += 1
        if st.crash_boots > MAX_CRASH_BOOTS:
            _revert(st, REASON_CRASH_LOOP, log)
        elif st.power_boots > MAX_POWER_BOOTS:
            _revert(st, REASON_UNCONFIRMED, log)
    reason = REASON_UNVERIFIABLE
    for idx in (st.active, 1 - st.active):
        if st.bad & (1 << idx):
            continue
        try:
            info = verify(idx, st.records[idx])
        except VerifyError as e:
            log("%s does not verify: %s" % (SLOTS[idx], e))
            st.records[idx] = None
            reason = REASON_UNVERIFIABLE
            continue
        if info["counter"] < st.counter and not recovery_allowed(info):
            log("%s refused: security counter %d is below %d" % (SLOTS[idx], info["counter"], st.counter))
            reason = REASON_ROLLBACK
            continue
        if info.get("full"):
            st.records[idx] = (info["digest"], info["counter"], info["version"][:20])
        if idx != st.active:
            # The other slot ran (was confirmed) before, or it would be marked bad.
            log("falling back from %s to %s" % (SLOTS[st.active], SLOTS[idx]))
            st.reverted_from = st.active
            st.reason = reason
            st.active = idx
            st.trial = CONFIRMED
            st.crash_boots = st.power_boots = 0
        if st.trial == CONFIRMED and info["counter"] > st.counter:
            st.counter = info["counter"]
        return idx, info
    return None, None


def not_runnable(st, idx, log=print):
    """The verified slot `idx` would not start: leave it as a failed trial."""
    st.active = idx
    _revert(st, REASON_NOT_RUNNABLE, log)


def _store(dev=None):
    if dev is None:
        import rom
        dev = rom.partition("bootstate")
    return Store(dev)


def set_pending(slot, info=None, dev=None):
    """Stage `slot` (name or index) for a trial boot at the next reset.

    info: {"digest", "counter", "version"} of the updater's full verification of the
    slot, kept as its verified-once record; None lets the loader verify it whole.
    """
    idx = SLOTS.index(slot) if isinstance(slot, str) else slot
    store = _store(dev)
    st = store.load()
    st.active = idx
    st.trial = STAGED
    st.crash_boots = st.power_boots = 0
    st.bad &= ~(1 << idx)
    st.records[idx] = (info["digest"], info["counter"], info["version"][:20]) if info else None
    store.save(st)
    return st


def confirm(slot=None, dev=None):
    """The running firmware vouches for itself: its trial ends and the security counter may rise.

    Returns True when the slot is (now) the confirmed one; False when the boot state
    names another slot (the box is not running what the state says).
    """
    store = _store(dev)
    st = store.load()
    if slot is not None and SLOTS[st.active] != slot:
        return False
    if st.trial != CONFIRMED:
        st.trial = CONFIRMED
        st.crash_boots = st.power_boots = 0
        rec = st.records[st.active]
        if rec and rec[1] > st.counter:
            st.counter = rec[1]
        store.save(st)
    return True


class Trial:
    """The app's side of a trial boot (firmware/fleetbox/main.py).

    Confirms the running slot after cloud contact and one complete collection cycle;
    past `deadline_s` without both it asks for a reboot, which the loader counts as a
    failed attempt, so a trial the firmware never confirms reverts too.
    """

    def __init__(self, slot, deadline_s=TRIAL_DEADLINE_S, dev=None, log=print):
        self.slot = slot
        self.dev = dev
        self.log = log
        self.deadline_s = deadline_s
        self.started = time.time()
        try:
            st = _store(dev).load()
            self.pending = st.trial == PENDING and SLOTS[st.active] == slot
        except (OSError, KeyError, ImportError) as e:
            log("boot state unreadable, no trial: %r" % e)
            self.pending = False
        if self.pending:
            log("%s is on trial: it confirms itself after cloud contact and a whole collection cycle" % slot)

    def after_cycle(self, collected, contacted):
        """Call after each cycle; True means: reboot now (the trial ran out)."""
        if not self.pending:
            return False
        if collected and contacted:
            self.pending = False
            if confirm(self.slot, self.dev):
                self.log("%s confirmed" % self.slot)
            return False
        if time.time() - self.started > self.deadline_s:
            self.log("%s not confirmed within %d s: rebooting (a failed trial attempt)" % (self.slot, self.deadline_s))
            return True
        return False
