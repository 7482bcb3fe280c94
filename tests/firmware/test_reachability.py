"""Asleep/off told apart from down (docs/collection.md): a printer seen before that falls
silent is reported once as "unreachable" (or "asleep" when it was last seen asleep), then
probed only every 2nd, 4th, ... sweep until it answers again. Runs on both runtimes
against the in-process agent of test_snmp (a real UDP peer on 127.0.0.1)."""
import asyncio

import test_snmp as ts
from fleetbox import ber, devstate, snmp
from fleetbox.sweep import SweepOptions, sweep

CONSOLE = "1.3.6.1.2.1.43.16.5.1.2.1.1"


def _sweeps(mib, plan):
    """plan: per sweep, True = the agent answers, False = it is silent, a dict = it answers
    from that MIB from now on. Returns [(probed, records, markers, requests received)]."""
    async def main():
        agent = ts.Agent(mib)
        agent.start()
        client = snmp.Client(timeout_ms=80, retries=0)
        state = devstate.DeviceState()
        out = []
        try:
            for answers in plan:
                if isinstance(answers, dict):
                    agent.rows = sorted(((ts._oidkey(o), o, v) for o, v in answers.items()),
                                        key=lambda r: r[0])
                    agent.mib = dict(answers)
                agent.drop_if = None if answers else (lambda req: True)
                recs, marks = [], []
                before = len(agent.requests)
                probed, _ = await sweep(client, iter([("127.0.0.1", agent.port)]), recs.append,
                                        SweepOptions(state=state, on_unreachable=marks.append))
                out.append((probed, recs, marks, len(agent.requests) - before))
        finally:
            client.close()
            await agent.stop()
            await asyncio.sleep(0)
        return out
    return asyncio.run(main())


def test_silent_after_seen_is_unreachable_once_then_gentle():
    out = _sweeps(ts.MIB, [True, False, False, False, False, False, False, True, False])
    probed = [o[0] for o in out]
    # seen, silent (marker), skipped 1, silent, skipped 2, silent, skipped 4 ... then answers
    assert probed == [1, 1, 0, 1, 0, 0, 1, 0, 0], probed
    assert out[0][1][0]["status"]["reachability"] == "reachable"
    assert out[0][1][0]["status"]["device"] != "down"
    markers = [m for o in out for m in o[2]]
    assert len(markers) == 1, markers
    m = markers[0]
    assert m["status"] == {"reachability": "unreachable"} and m["ip"] == "127.0.0.1" and m["scan"] == "alerts"
    assert all(not o[1] for o in out[1:])


def test_answering_again_resets_and_a_later_silence_is_told_again():
    out = _sweeps(ts.MIB, [True, False, False, True, True, False])
    assert [o[0] for o in out] == [1, 1, 0, 1, 1, 1]
    assert [len(o[1]) for o in out] == [1, 0, 0, 1, 1, 0]
    assert [len(o[2]) for o in out] == [0, 1, 0, 0, 0, 1]


def test_never_seen_address_is_never_reported():
    out = _sweeps(ts.MIB, [False, False, False])
    assert [o[0] for o in out] == [1, 1, 1]
    assert not any(o[1] or o[2] for o in out)


def test_sleeping_printer_is_asleep_not_down():
    mib = dict(ts.MIB)
    mib[CONSOLE] = ber.encode_octets(b"Sleep mode")
    out = _sweeps(mib, [True, False])
    st = out[0][1][0]["status"]
    assert st["power"] == "sleep" and st["reachability"] == "asleep"
    assert out[1][2][0]["status"] == {"reachability": "asleep"}


def test_a_non_printer_is_taken_at_its_word_for_a_while():
    """A device found not to be a printer (no Printer-MIB) costs one probe GET per sweep
    for the next NP_SKIP sweeps, not the printer check too; then it is checked again."""
    mib = dict((k, v) for k, v in ts.MIB.items() if not k.startswith("1.3.6.1.2.1.43."))
    out = _sweeps(mib, [True] * (devstate.NP_SKIP + 2))
    assert not any(o[1] for o in out)
    per_sweep = [o[3] for o in out]
    assert per_sweep[0] == 2 and per_sweep[-1] == 2          # probe + printer check
    assert per_sweep[1:-1] == [1] * devstate.NP_SKIP        # the probe only


def test_a_printer_seen_before_is_checked_every_sweep_even_when_it_looks_otherwise():
    """A printer whose agent answers without its Printer-MIB for a while (booting) is not
    taken for a non-printer: it is checked again on the next sweep."""
    bare = dict((k, v) for k, v in ts.MIB.items() if not k.startswith("1.3.6.1.2.1.43."))
    out = _sweeps(ts.MIB, [True, bare, True, ts.MIB])
    assert [len(o[1]) for o in out] == [1, 0, 0, 1]
    assert [o[3] for o in out][1:3] == [2, 2]          # probe + printer check, each time
