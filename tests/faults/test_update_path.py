"""The whole update path on MicroPython from a real flash image (issue 11, "Done when"): an image
of this tree signed 2-of-3 with fbtool, published and rolled out through the update service by an
operator (fbtool update), offered in the box's sealed upload answer, downloaded by Range, installed
into slot B, booted on trial and confirmed; then refusals through the same path, each reported to
the cloud with its reason while the box keeps uploading with the firmware it runs."""
import pytest

from fbtool.image import firmware_version
from tests.faults.update_sim import BS, boot_state, find, small_sim

NEW = firmware_version() + ".1"


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = small_sim(str(tmp_path_factory.mktemp("update-path")), net=71)
    try:
        s.wait_cycles(1, 90)
        yield s
    finally:
        s.stop()


def test_publish_offer_download_install_trial_confirm(sim):
    upd = sim.updates
    since = len(sim.box_log)
    rid = upd.publish(upd.build(NEW, 1))
    state, reason = upd.follow(rid, timeout=180, since=since)
    assert (state, reason) == ("confirmed", None), "\n".join(sim.box_log[since:])
    steps = [find(sim, text, since) for text in (
        "I update: offer: app %s (rollout %d)" % (NEW, rid), "I update: downloaded ",
        "staged in slot_b for a trial boot",
        "I loader: slot_b %s boots on trial" % NEW, "I loader: starting %s from slot_b" % NEW,
        "I main: slot_b confirmed", "I update: update of rollout %d confirmed" % rid)]
    assert None not in steps and steps == sorted(steps), (steps, "\n".join(sim.box_log[since:]))
    # confirmed only after an upload of the new firmware was acknowledged
    assert find(sim, "I main: uploaded ", steps[4]) < steps[5]
    ro = upd.rollout(rid)
    assert ro["state"] == "active" and ro["counts"] == {"confirmed": 1}
    assert "SIM-0001             confirmed" in upd.status(rid)
    st, valid = boot_state(sim)
    assert (st.active, st.trial, st.counter, st.crash_boots) == (1, BS.CONFIRMED, 1, 0) and valid >= 1
    assert st.records[1][1:] == (1, NEW)        # slot B's verified-once record: the signed counter and version


def _flip_a_chunk(path):
    with open(path, "r+b") as f:
        f.seek(-3000, 2)            # inside the last chunk of ciphertext: the signed head is untouched
        b = f.read(1)
        f.seek(-3000, 2)
        f.write(bytes([b[0] ^ 0x40]))
    return path


REFUSALS = (
    ("threshold", lambda upd: upd.build(NEW + ".1", 2, signers=("k3",), name="one-signature")),
    ("bad_chunk", lambda upd: _flip_a_chunk(upd.build(NEW + ".1", 2, name="bit-flipped"))),
    ("older_version", lambda upd: upd.build(firmware_version(), 2, name="older")),
    ("security_counter", lambda upd: upd.build(NEW + ".2", 0, name="counter-0")),
    ("expired", lambda upd: upd.build(NEW + ".3", 2, expires=1700000000, name="expired")),
)


@pytest.mark.parametrize("reason,make", REFUSALS, ids=[r for r, _ in REFUSALS])
def test_a_refusal_is_reported_and_the_box_keeps_uploading(sim, reason, make):
    upd = sim.updates
    before, _ = boot_state(sim)
    since = len(sim.box_log)
    rid = upd.publish(make(upd))
    state, got = upd.follow(rid, timeout=120, since=since)
    assert (state, got) == ("refused", reason), "\n".join(sim.box_log[since:])
    assert find(sim, "W update: update refused [%s]: " % reason, since) is not None
    row = [p for p in upd.rollout(rid)["progress"] if p["box"] == sim.serial][0]
    assert row["detail"]                          # what the operator reads
    # the box goes on with its firmware: another upload, no reboot, the boot state as it was
    cycles = len(sim.cycles())
    sim.wait_for("an upload after the refusal", lambda: len(sim.cycles()) > cycles, 60)
    assert find(sim, "I loader: starting ", since) is None
    after, _ = boot_state(sim)
    assert (after.active, after.trial, after.counter, after.records) == \
        (before.active, before.trial, before.counter, before.records)
