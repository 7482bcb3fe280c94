"""The collector's table walks (docs/collection.md "What a full scan asks"): every value
read, no value thrown away where the table is regular, nothing lost where it is not.
Runs on both runtimes against the in-process agent of test_snmp."""
import asyncio

import test_snmp as ts
from fleetbox import ber, collector, oids, snmp, walker

SUP = "1.3.6.1.2.1.43.11.1.1"
AFTER = "1.3.6.1.2.1.43.12.1.1.4.1.1"      # what follows the supplies table


def _table(rows, cols, skip=(), extra=()):
    """A supplies table: (col, row) -> value col*100+row, minus `skip`, plus `extra` cells."""
    mib = dict(ts.MIB)
    for k in list(mib):
        if k.startswith(SUP + "."):
            del mib[k]
    cells = [(c, r) for c in cols for r in rows if (c, r) not in skip] + list(extra)
    for c, r in cells:
        mib["%s.%d.1.%d" % (SUP, c, r)] = ber.encode_int(c * 100 + r)
    mib[AFTER] = ber.encode_octets(b"x" * 200)    # a big object right after the table
    return mib, cells


def _walk(mib, hint=None, **kw):
    async def main():
        agent = ts.Agent(mib)
        agent.start()
        client = snmp.Client(timeout_ms=300, retries=1)
        target = walker.Target("127.0.0.1", agent.port, snmp.Credential.v2c(b"public"),
                               rows={"supplies": hint} if hint else {})
        try:
            rows = await walker.Walker(client).walk_table(target, "supplies", SUP, 3, 9, **kw)
        finally:
            client.close()
            await agent.stop()
            await asyncio.sleep(0)
        return rows, agent.requests, target
    return asyncio.run(main())


def _answered(mib, requests):
    """Every OID the agent answered (replayed from the requests it received)."""
    agent = ts.Agent(mib)
    out = []
    for req, _ in requests:
        vbs, _, _ = agent.answer(req)
        out += [o for o, _ in vbs]
    agent.sock.close()
    agent.other.close()
    agent.elsewhere.close()
    return out


def test_regular_table_read_exactly_without_overshoot():
    mib, cells = _table(range(1, 6), range(3, 10))
    rows, reqs, target = _walk(mib)
    assert sorted((c, r) for r in rows for c in rows[r]) == sorted(cells)
    assert all(rows[r][c] == c * 100 + r for c, r in cells)
    assert len(reqs) == 2                              # 8 rows' worth, then exactly the rest
    assert AFTER not in _answered(mib, reqs)           # nothing past the table was asked for
    assert target.newrows["supplies"] == 5


def test_remembered_row_count_reads_the_table_in_one_request():
    mib, cells = _table(range(1, 4), range(3, 10))
    rows, reqs, _ = _walk(mib, hint=3)
    assert len(reqs) == 1 and sorted((c, r) for r in rows for c in rows[r]) == sorted(cells)


def test_irregular_table_loses_nothing():
    # a row missing from one column, and the last column holding a row the first lacks
    mib, cells = _table(range(1, 5), range(3, 10), skip=[(6, 3)], extra=[(9, 7)])
    rows, reqs, _ = _walk(mib)
    assert sorted((c, r) for r in rows for c in rows[r]) == sorted(cells)


def test_walk_goes_on_from_an_answer_already_read():
    """The printer check's GETBULK carries the walk's first request: the walk starts from its answer."""
    mib, cells = _table(range(1, 4), range(3, 10))
    pre = []
    for c, r in sorted(cells)[:8]:          # what a first request of 8 repetitions returns
        pre.append(("%s.%d.1.%d" % (SUP, c, r), c * 100 + r))
    rows, reqs, _ = _walk(mib, pre=pre)
    assert sorted((c, r) for r in rows for c in rows[r]) == sorted(cells)
    assert len(reqs) == 1 and AFTER not in _answered(mib, reqs)
    assert not [o for o in _answered(mib, reqs) if o in [p[0] for p in pre]]   # nothing asked twice


def test_a_counters_scan_asks_nothing_about_alerts_or_supplies_rows():
    async def main():
        agent = ts.Agent(ts.MIB)
        agent.start()
        client = snmp.Client(timeout_ms=300, retries=1)
        try:
            rec = await collector.Collector(client).collect("127.0.0.1", agent.port, "counters")
        finally:
            client.close()
            await agent.stop()
            await asyncio.sleep(0)
        return rec, [o for req, _ in agent.requests for o, _ in req.varbinds]
    rec, asked = asyncio.run(main())
    assert rec["counters"]["total"] == 123456 and "supplies" not in rec
    assert not [o for o in asked if o.startswith(oids.PRT_ALERT)]
    assert not [o for o in asked if o.startswith(SUP + ".") and not o.startswith(oids.SUPPLY_ROOT)]


def test_counter_table_rows_indexed_by_two_arcs_are_all_counted():
    """A vendor counter table indexed (unit, counter): rows 1.1 and 2.1 share their last
    arc and must not overwrite each other."""
    from fleetbox import countertables
    tab = "1.3.6.1.4.1.99999.1.1"
    mib = dict(ts.MIB)
    for idx, (typ, val) in {"1.1": (10, 100), "2.1": (10, 20), "2.2": (400, 7)}.items():
        mib["%s.2.%s" % (tab, idx)] = ber.encode_int(typ)
        mib["%s.3.%s" % (tab, idx)] = ber.encode_counter32(val)
    spec = {"table": tab, "type": 2, "value": 3, "map": {"total": [[10, 10]], "print": [[400, 400]]}}

    async def main():
        agent = ts.Agent(mib)
        agent.start()
        client = snmp.Client(timeout_ms=300, retries=1)
        target = walker.Target("127.0.0.1", agent.port, snmp.Credential.v2c(b"public"))
        try:
            return await walker.Walker(client).walk_roots(
                target, [tab + ".2", tab + ".3"], 2, 64, whole_index=True)
        finally:
            client.close()
            await agent.stop()
            await asyncio.sleep(0)
    types, values = asyncio.run(main())
    into, sources = {}, {}
    countertables.table(spec, types, values, into, sources)
    assert into == {"total": 120, "print": 7}, into
