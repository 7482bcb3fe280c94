"""A printer whose SNMP fell silent but whose address answers ICMP echo: the marker says
so (status.ping), "answers ping, SNMP silent"; without the option nothing changes. Both
runtimes, against the in-process agent of test_snmp on 127.0.0.1 (which the loopback
answers ping for)."""
import asyncio

import test_snmp as ts
from fleetbox import devstate, icmp, snmp
from fleetbox.sweep import SweepOptions, sweep


def _markers(ping):
    async def main():
        agent = ts.Agent(ts.MIB)
        agent.start()
        client = snmp.Client(timeout_ms=80, retries=0)
        state = devstate.DeviceState()
        marks = []
        try:
            for answers in (True, False):
                agent.drop_if = None if answers else (lambda req: True)
                await sweep(client, iter([("127.0.0.1", agent.port)]), lambda rec: None,
                            SweepOptions(state=state, on_unreachable=marks.append, ping=ping))
        finally:
            client.close()
            await agent.stop()
            await asyncio.sleep(0)
        return marks
    return asyncio.run(main())


def test_silent_snmp_but_the_address_answers_ping():
    sock, _ = icmp.open_socket()
    marks = _markers(True)
    assert len(marks) == 1 and marks[0]["ip"] == "127.0.0.1"
    if sock is None:
        assert marks[0]["status"] == {"reachability": "unreachable"}     # cannot tell: left out
    else:
        sock.close()
        assert marks[0]["status"] == {"reachability": "unreachable", "ping": True}


def test_without_the_option_the_marker_is_unchanged():
    marks = _markers(False)
    assert len(marks) == 1 and marks[0]["status"] == {"reachability": "unreachable"}
