"""Where a worker's CPU goes per envelope: one worker's uvicorn server (the service's own
configuration: TLS, httptools, uvloop) on a unix socket, fed by a client process over kept-alive
TLS connections, on PostgreSQL; cProfile on CPU time in the event loop's thread (--handler: in
the thread that runs the group commits instead), the CPU of every thread of the worker (event loop
vs. the thread pool that runs the handler) from /proc, and the groups' sizes.

    .venv/bin/python bench/cloud/profile_worker.py [--uploads 3000] [--connections 32] [--top 25] [--handler]

A unix socket binds no network address, so this runs next to other work on the machine.
"""
import argparse
import asyncio
import cProfile
import multiprocessing
import os
import pstats
import socket
import ssl
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "firmware")]

import anyio.to_thread  # noqa: E402
import uvloop  # noqa: E402

from cloud import ingest_group  # noqa: E402
from cloud.app import Limits, create_app  # noqa: E402
from cloud.server import _Server, tune_gc, uvicorn_config  # noqa: E402
from cloud.store import Store  # noqa: E402
from simulator import pki  # noqa: E402
from tests.cloud.pgcluster import Cluster  # noqa: E402
from tests.cloud.service import seal_uploads  # noqa: E402

HOSTNAME = "liberty.fleetbox.test"
TICKS = os.sysconf("SC_CLK_TCK")


def threads_cpu_s():
    """{thread id: user + system CPU seconds} of this process's threads."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/%s/stat" % tid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


async def _post(path, ca_pem, jobs, connections):
    ctx = ssl.create_default_context(cafile=ca_pem)
    queue = list(jobs)

    async def one():
        reader, writer = await asyncio.open_unix_connection(path, ssl=ctx, server_hostname=HOSTNAME)
        while queue:
            body = queue.pop()
            writer.write(b"POST /v1/ingest HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n"
                         % (HOSTNAME.encode(), len(body)) + body)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.split()[1] == b"200", head
            length = [int(v) for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")[1:])
                      if k.lower() == b"content-length"]
            await reader.readexactly(length[0] if length else 0)
        writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))


def client(path, ca_pem, jobs, connections):
    uvloop.run(_post(path, ca_pem, jobs, connections))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uploads", type=int, default=3000)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="the thread pool's size (0: anyio's default, 40)")
    ap.add_argument("--top", type=int, default=25, help="functions of the profile shown; 0: no profiler")
    ap.add_argument("--handler", action="store_true",
                    help="profile the thread running the groups (ingest_group.handle_group), not the loop")
    a = ap.parse_args()
    boxes = max(1, a.uploads // 2)
    with tempfile.TemporaryDirectory(prefix="fleetbox-bench-") as tmp, Cluster() as cluster:
        ca = pki.ensure_ca(tmp)
        cert, key = pki.ensure_server(tmp, "liberty", HOSTNAME, [], ca)
        keys = {"FBX-%05d" % b: os.urandom(32) for b in range(boxes)}
        envelopes = []
        for b, serial in enumerate(keys):
            envelopes.append(seal_uploads(serial, keys[serial], b, 2))
        # each box's two envelopes in order: the second of each box after all the firsts
        jobs = [e[1] for e in envelopes] + [e[0] for e in envelopes]
        store = Store(cluster.create_database("w"), pool_size=8)
        app = create_app("liberty", store, lambda box, kid: keys.get(box) if kid == 1 else None)
        server = _Server(uvicorn_config(app, cert, key, Limits()))
        tune_gc()       # as a worker of the service does
        path = os.path.join(tmp, "liberty.sock")
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path)
        sock.listen(128)
        prof = cProfile.Profile(time.thread_time)    # the loop's own CPU, not the pool's
        loop_tid, sizes = [], []
        handle_group = ingest_group.handle_group

        def counted(endpoint, items):
            sizes.append(len(items))
            if not a.handler:
                return handle_group(endpoint, items)
            prof.enable()
            try:
                return handle_group(endpoint, items)
            finally:
                prof.disable()

        ingest_group.handle_group = counted

        def serve():
            loop_tid.append(threading.get_native_id())
            if a.top and not a.handler:
                prof.enable()
            async def run():
                if a.threads:
                    anyio.to_thread.current_default_thread_limiter().total_tokens = a.threads
                await server.serve(sockets=[sock])
            uvloop.run(run())
            if not a.handler:
                prof.disable()

        t = threading.Thread(target=serve, name="event-loop")
        t.start()
        while not server.started:
            time.sleep(0.05)
        proc = multiprocessing.get_context("spawn").Process(
            target=client, args=(path, os.path.join(tmp, "ca.pem"), jobs, a.connections))
        cpu0, t0 = threads_cpu_s(), time.perf_counter()
        proc.start()
        proc.join()
        wall, cpu1 = time.perf_counter() - t0, threads_cpu_s()
        server.should_exit = True
        t.join()
        store.close()
        result = {k: cpu1.get(k, 0) - cpu0.get(k, 0) for k in cpu1}
    n = len(jobs)
    loop_s = result.pop(loop_tid[0], 0.0)
    pool_s = sum(result.values())
    print("%d envelopes in %.1f s (%.0f/s): worker CPU per envelope %.2f ms in the event loop "
          "(HTTP, TLS, Starlette), %.2f ms in the other threads (the handler)"
          % (n, wall, n / wall, loop_s / n * 1000, pool_s / n * 1000))
    if sizes:
        print("%d groups, %.1f uploads each on average, largest %d" % (len(sizes), sum(sizes) / len(sizes), max(sizes)))
    if a.top:
        pstats.Stats(prof).sort_stats("tottime").print_stats(a.top)


if __name__ == "__main__":
    main()
