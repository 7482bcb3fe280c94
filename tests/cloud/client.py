"""A small HTTPS load client for the cloud's tests and bench/cloud: boxes post envelopes over
kept-alive TLS connections, each box's envelopes in order, many connections at once.

    results = post_jobs(address, port, ca_der, jobs, connections=32)
        jobs: one list of envelope bodies per box; results: (status, reply bytes, seconds) per
        envelope, in job order.
Runs in its own process too (`post_jobs_in_process`), so clients do not share one GIL.
"""
import asyncio
import ssl
import time

HOSTNAME = "liberty.fleetbox.test"


def client_context(ca_der):
    ctx = ssl.create_default_context(cadata=ca_der)
    return ctx


async def _read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _connection(address, port, ctx, hostname, queue, results, deadline):
    reader = writer = None
    try:
        while deadline is None or time.time() < deadline:
            try:
                index, bodies = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            out = []
            for body in bodies:
                for attempt in (0, 1):
                    if writer is None:
                        reader, writer = await asyncio.open_connection(address, port, ssl=ctx,
                                                                       server_hostname=hostname)
                    t0 = time.perf_counter()
                    writer.write(b"POST /v1/ingest HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n"
                                 % (hostname.encode(), len(body)) + body)
                    try:
                        status, reply = await _read_response(reader)
                        break
                    except (asyncio.IncompleteReadError, ConnectionError):
                        writer.close()      # the server closed a kept-alive connection: once more on a new one
                        reader = writer = None
                        if attempt:
                            raise
                out.append((status, reply, time.perf_counter() - t0))
            results[index] = out
    finally:
        if writer is not None:
            writer.close()


async def _post_jobs(address, port, ca_der, jobs, connections, hostname, deadline):
    ctx = client_context(ca_der)
    queue = asyncio.Queue()
    for i, job in enumerate(jobs):
        queue.put_nowait((i, job))
    results = [None] * len(jobs)
    await asyncio.gather(*(_connection(address, port, ctx, hostname, queue, results, deadline)
                           for _ in range(min(connections, len(jobs)))))
    return results


def post_jobs(address, port, ca_der, jobs, connections=32, hostname=HOSTNAME, deadline=None):
    """[[(status, reply, seconds), ...] per job; None for a job not started by the deadline
    (time.time()), after which no connection takes another job]"""
    try:
        import uvloop
        return uvloop.run(_post_jobs(address, port, ca_der, jobs, connections, hostname, deadline))
    except ImportError:
        return asyncio.run(_post_jobs(address, port, ca_der, jobs, connections, hostname, deadline))


def post_jobs_in_process(args):
    """post_jobs(*args) for a process pool."""
    return post_jobs(*args)
