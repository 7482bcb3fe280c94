"""A printer whose SNMP fell silent but whose address answers ICMP echo: the marker says
so (status.ping), "answers ping, SNMP silent"; without the option nothing changes; one
echo per silent device, at the sweep's rate; where ICMP is not allowed the markers go
without it and it is not tried again that sweep. Both
runtimes, against the in-process agent of test_snmp on 127.0.0.1 (which the loopback
answers ping for)."""
import asyncio

import test_snmp as ts
from check import LogCapture
from fleetbox import devstate, icmp, port, snmp
from fleetbox import sweep as sweep_mod
from fleetbox.sweep import SweepOptions, sweep


def _markers(ping):
    async def main():
        agent = ts.Agent(ts.MIB)
        agent.start()
        client = snmp.Client(timeout_ms=300, retries=1)    # room for a loaded machine: the first sweep must answer
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


SILENT = ["127.0.0.%d" % i for i in (2, 3, 4)]   # loopback addresses: they answer echo, no agent there


def _silent_markers(rate=0):
    """Markers of three devices seen before whose addresses no agent answers any more."""
    async def main():
        client = snmp.Client(timeout_ms=60, retries=0)
        state = devstate.DeviceState()
        for host in SILENT:
            state.saw(host, None, None, "on")
        marks = []
        try:
            await sweep(client, iter([(h, 9) for h in SILENT]), lambda rec: None,
                        SweepOptions(state=state, on_unreachable=marks.append, ping=True, rate=rate))
        finally:
            client.close()
            await asyncio.sleep(0)
        return marks
    return asyncio.run(main())


def test_one_echo_per_silent_device_short_and_at_the_sweeps_rate():
    calls = []
    real = icmp.ping

    async def counted(host, timeout_ms=1000, sock=None, raw=None):
        calls.append((host, timeout_ms, port.ticks_ms()))
        return await real(host, timeout_ms, sock, raw)
    icmp.ping = counted
    try:
        marks = _silent_markers(rate=20)
    finally:
        icmp.ping = real
    assert sorted(m["ip"] for m in marks) == SILENT
    assert sorted(c[0] for c in calls) == SILENT                    # one echo each, no retry
    assert all(c[1] <= sweep_mod.PING_TIMEOUT_MS for c in calls)
    assert all(port.ticks_diff(b[2], a[2]) >= 50 for a, b in zip(calls, calls[1:]))   # 20 a second at most
    sock, _ = icmp.open_socket()
    if sock is not None:
        sock.close()
        assert all(m["status"]["ping"] is True for m in marks)


def test_where_icmp_is_not_allowed_the_markers_go_without_it_and_it_is_tried_once():
    opened = []
    real = icmp.open_socket

    def refused():
        opened.append(1)    # as where the box's group is outside net.ipv4.ping_group_range, unprivileged
        return None, None
    icmp.open_socket = refused
    try:
        with LogCapture(port.INFO) as log:
            marks = _silent_markers()
    finally:
        icmp.open_socket = real
    assert sorted(m["ip"] for m in marks) == SILENT
    assert all(m["status"] == {"reachability": "unreachable"} for m in marks)
    assert opened == [1]
    assert len([line for line in log.lines if "ICMP echo not allowed" in line]) == 1
