"""The cost of one upload in the store alone, without HTTP or TLS: what the database path takes
(Python CPU of this process, CPU of the PostgreSQL backend from /proc), so a
change to cloud/store.py can be judged in seconds and apart from the machine's other load.

    .venv/bin/python bench/cloud/store_upload.py [--uploads 2000] [--database sqlite|postgresql]
        [--app [--group N]] [--profile N] [--statements N]

Each upload is the workload of bench/cloud/ingest.py (8-record full scan, payload v1) with the
down seq of its sealed answer, as the service does it. --app: the whole handling of a sealed
envelope instead (the Endpoint create_app builds, with its answer hooks: open, decode, store,
seal the answer, log), all but HTTP and TLS; the cyclic collector tuned as in a worker.
--profile prints cProfile's N costliest functions by their own CPU time; --statements (PostgreSQL)
the N statements that took the database longest, per upload, from pg_stat_statements.
"""
import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "firmware")]

from cloud.server import tune_gc  # noqa: E402
from cloud.store import Store  # noqa: E402
from tests.cloud.pgcluster import Cluster  # noqa: E402
from cloud.app import create_app  # noqa: E402
from cloud.provision import Provisioning, either_keys  # noqa: E402
from cloud.ingest_group import handle_group  # noqa: E402
from tests.cloud.service import claim_boxes, printer_records, seal_uploads  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid):
    """user + system CPU seconds of a process, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def sealed(uploads, prefix, boxes=100):
    """(lookup of keys, envelopes) of `boxes` boxes posting uploads in turn."""
    keys = {"%s-%05d" % (prefix, b): os.urandom(32) for b in range(boxes)}
    per_box = [seal_uploads("%s-%05d" % (prefix, b), keys["%s-%05d" % (prefix, b)], b, -(-uploads // boxes))
               for b in range(boxes)]
    envelopes = [per_box[u % boxes][u // boxes] for u in range(uploads)]
    return (lambda box, kid: keys.get(box) if kid == 1 else None), envelopes


def run_app(endpoint, envelopes, group=0):
    """Every envelope through the handler: one by one, or `group` at a time as the group commit
    (cloud/ingest_group.py) takes concurrent requests."""
    if group:
        for i in range(0, len(envelopes), group):
            answers = handle_group(endpoint, [(data, "127.0.0.1", time.monotonic()) for data in envelopes[i:i + group]])
            assert {a.status_code for a in answers} == {200}, [a.status_code for a in answers]
        return
    for data in envelopes:
        status = endpoint._process(data, "127.0.0.1", time.monotonic()).status_code
        assert status == 200, status


def claimed(store, lookup, serials):
    """Provisioning over `store` where `serials` are claimed boxes holding their keys from `lookup`."""
    claim_boxes(store, {s: lookup(s, 1) for s in serials})
    return Provisioning(store, [])


def run(store, uploads, prefix, boxes=100):
    batches = [{"scan": "full", "cycle": 1000 + u, "records": printer_records(u % boxes, 8, u)} for u in range(uploads)]
    for u, batch in enumerate(batches):
        box = "%s-%05d" % (prefix, u % boxes)
        store.ingest(box, u // boxes + 1, u // boxes + 1, batch, "liberty", 4176, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uploads", type=int, default=2000)
    ap.add_argument("--database", default="postgresql", choices=("sqlite", "postgresql"))
    ap.add_argument("--app", action="store_true", help="through cloud.app's handler, from sealed envelopes")
    ap.add_argument("--group", type=int, default=0, metavar="N",
                    help="with --app on PostgreSQL: N uploads per transaction (group commit)")
    ap.add_argument("--profile", type=int, default=0, metavar="N")
    ap.add_argument("--statements", type=int, default=0, metavar="N")
    ap.add_argument("--provisioned", action="store_true",
                    help="with --app: the boxes' keys held by provisioning in the database (claimed boxes), "
                         "as zero-touch provisioned boxes are, instead of a manufacturing manifest's")
    a = ap.parse_args()
    statements = []
    with tempfile.TemporaryDirectory(prefix="fleetbox-bench-") as tmp:
        settings = {"shared_preload_libraries": "pg_stat_statements"} if a.statements else None
        cluster = Cluster(settings=settings).start() if a.database == "postgresql" else None
        try:
            url = cluster.create_database("bench") if cluster else "sqlite:///%s/cloud.sqlite" % tmp
            store = Store(url, pool_size=1)
            if a.app:
                warm_keys, warm = sealed(50, "WARM")
                test_keys, envelopes = sealed(a.uploads, "FBX")
                # the service's endpoint, with its answer hooks (update offers)
                lookup = lambda box, kid: warm_keys(box, kid) or test_keys(box, kid)  # noqa: E731
                provisioning = None
                if a.provisioned:
                    provisioning = claimed(store, lookup, ["WARM-%05d" % b for b in range(100)]
                                           + ["FBX-%05d" % b for b in range(100)])
                    lookup = either_keys(provisioning.keys, lambda box, kid: None)
                endpoint = create_app("liberty", store, lookup, provisioning=provisioning).state.endpoint
                run_app(endpoint, warm)
            else:
                run(store, 50, "WARM")                     # warm: statement caches, the connection
            tune_gc()       # as a worker of the service does
            backend = None
            if cluster:
                with store.engine.connect() as c:
                    backend = c.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                    if a.statements:
                        c.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                        c.exec_driver_sql("SELECT pg_stat_statements_reset()")
                        c.commit()
            prof = cProfile.Profile(time.process_time) if a.profile else None   # CPU, not waiting
            pg0 = proc_cpu_s(backend) if backend else 0.0
            t0, c0 = time.perf_counter(), time.process_time()
            if prof:
                prof.enable()
            if a.app:
                run_app(endpoint, envelopes, a.group)
            else:
                run(store, a.uploads, "FBX")
            if prof:
                prof.disable()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            pg = (proc_cpu_s(backend) - pg0) if backend else 0.0
            if a.statements and cluster:
                with store.engine.connect() as c:
                    statements = c.exec_driver_sql(
                        "SELECT total_exec_time + total_plan_time, calls, rows, query FROM pg_stat_statements "
                        "ORDER BY 1 DESC LIMIT %d" % a.statements).all()
            store.close()
        finally:
            if cluster:
                cluster.stop()
    n = a.uploads
    print("%s%s%s: %d uploads in %.2f s: %.2f ms wall, %.2f ms Python CPU, %.2f ms database CPU per upload;"
          " %.0f uploads per CPU-second" % (a.database, " through the app" if a.app else "",
                                           " in groups of %d" % a.group if a.group else "", n, wall,
                                           wall / n * 1000, cpu / n * 1000, pg / n * 1000, n / (cpu + pg)))
    for ms, calls, rows, query in statements:
        print("%7.3f ms per upload  %6d calls %7d rows  %s" % (ms / n, calls, rows, " ".join(query.split())[:110]))
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(a.profile)


if __name__ == "__main__":
    main()
