"""The box's default collector count (config `workers` 0): 2 where the free heap holds two
collections at once, else 1; a configured count is used as it is. Both runtimes."""
import asyncio

from fleetbox import port, snmp
from fleetbox import sweep as sweep_mod
from fleetbox.sweep import SweepOptions, collectors_for_heap, sweep


def _with_free(free, fn):
    real = port.mem_free
    port.mem_free = lambda: free
    try:
        return fn()
    finally:
        port.mem_free = real


def test_two_collectors_only_where_the_heap_holds_them():
    assert _with_free(sweep_mod.TWO_COLLECTORS_HEAP, collectors_for_heap) == 2
    assert _with_free(sweep_mod.TWO_COLLECTORS_HEAP - 1, collectors_for_heap) == 1
    assert _with_free(64 * 1024, collectors_for_heap) == 1
    assert _with_free(-1, collectors_for_heap) == 2        # a runtime that cannot tell: not the limit


def _workers_started(workers, free):
    started = []
    real = sweep_mod._Sweep.worker

    async def counted(self):
        started.append(1)
        return await real(self)

    async def main():
        client = snmp.Client(timeout_ms=50, retries=0)
        try:
            await sweep(client, iter([]), lambda rec: None, SweepOptions(workers=workers))
        finally:
            client.close()
    sweep_mod._Sweep.worker = counted
    try:
        _with_free(free, lambda: asyncio.run(main()))
    finally:
        sweep_mod._Sweep.worker = real
    return len(started)


def test_a_sweep_starts_as_many_collectors():
    assert _workers_started(0, 64 * 1024) == 1
    assert _workers_started(0, 200 * 1024) == 2
    assert _workers_started(3, 64 * 1024) == 3         # configured: as it is
