"""A window of answers arriving at once (a /24 fits in one): only the first few wait with
their system group, the others as address, port and credential, and the collector asks
those again with the credential that answered, so every record still carries its system
group. Both runtimes, against in-process agents of test_snmp on 127.0.0.1 (a port each)."""
import asyncio

import test_snmp as ts
from fleetbox import ber, oids, snmp
from fleetbox import sweep as sweep_mod
from fleetbox.sweep import SweepOptions, sweep

AGENTS = sweep_mod.VALUES_KEPT + 4


def _sys_group_gets(agent, community):
    return len([1 for req, _ in agent.requests if req.community == community and req.pdu_type == ber.GET
                and [o for o, _ in req.varbinds] == list(oids.SYS_GROUP)])


def _sweep_agents(agents, opts):
    """The records of one sweep over in-process `agents` (started and stopped here)."""
    async def main():
        for a in agents:
            a.start()
        client = snmp.Client(timeout_ms=300, retries=1)
        recs = []
        try:
            await sweep(client, iter([("127.0.0.1", a.port) for a in agents]), recs.append, opts)
        finally:
            client.close()
            for a in agents:
                await a.stop()
            await asyncio.sleep(0)
        return recs
    return asyncio.run(main())


def test_answers_past_the_kept_few_are_asked_their_system_group_again():
    agents = [ts.Agent(ts.MIB, community=b"private") for _ in range(AGENTS)]
    creds = [snmp.Credential("2c", b"public"), snmp.Credential("2c", b"private")]
    recs = _sweep_agents(agents, SweepOptions(creds=creds, workers=1))
    assert sorted(r["port"] for r in recs) == sorted(a.port for a in agents)
    for r in recs:
        assert r["sys_descr"] == "Fake printer" and r["hostname"] == "fb-test" and r["uptime_s"] == 123, r
    # discovery asked each once with "private" (after "public" went unanswered, a try and a
    # retry); the collector asked again, with "private" at once, only those whose values the
    # sweep did not keep (the worker takes one or two meanwhile: more may have been kept)
    again = [_sys_group_gets(a, b"private") - 1 for a in agents]
    assert set(again) == {0, 1} and sum(again) <= AGENTS - sweep_mod.VALUES_KEPT, again
    assert all(len([1 for req, _ in a.requests if req.community == b"public"]) == 2 for a in agents)


def test_a_failure_looking_up_the_extra_agent_costs_that_lookup_not_the_sweep():
    # a small heap's MemoryError re-reading a vendor's profile, after the record was made
    from check import LogCapture
    from fleetbox.collector import Collector

    def no_memory(self, rec):
        raise MemoryError("memory allocation failed, allocating 496 bytes")

    agents = [ts.Agent(ts.MIB) for _ in range(3)]
    real = Collector.extra_agent
    Collector.extra_agent = no_memory
    try:
        with LogCapture() as log:
            recs = _sweep_agents(agents, SweepOptions(workers=2))
    finally:
        Collector.extra_agent = real
    assert sorted(r["port"] for r in recs) == sorted(a.port for a in agents)
    assert log.text().count("extra agent not looked up: MemoryError") == 3, log.text()
