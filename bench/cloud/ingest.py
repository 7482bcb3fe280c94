"""Cloud ingest at scale: thousands of simulated boxes post sealed envelopes to `fleetbox-cloud serve`
on SQLite and PostgreSQL with 1, 2 and 4 worker processes, next to the old server
(simulator/cloud.py of commit e28d120: ThreadingHTTPServer over one SQLite file) in the same run.

Every box's envelopes are sealed beforehand by the firmware's own modules on CPython (the box's
cbor and envelope code; no MicroPython): 8-record full uploads (payload v1), the workload of the
old figure (89 envelopes/s, bench/uplink/wire.py). Client processes keep one TLS connection per
in-flight box (CONNECTIONS in all) and post each box's envelopes in order. Each run stops taking
new boxes after RUN_S seconds, so the whole bench stays within a few minutes.

    .venv/bin/python bench/cloud/ingest.py [--boxes 3000] [--uploads 3] [--seconds 8] [--workers 1,2,4]
        [--backends sqlite,postgresql] [--before COMMIT] [--one-by-one] [--no-old] [--keys provisioned|manifest]

The boxes are claimed, zero-touch provisioned boxes (docs/provisioning.md): their envelope keys are
in the database's `provisioned` table, which the service asks about every group (--keys manifest:
the keys in a manufacturing manifest instead, as factory-seeded boxes have them).

Enough envelopes that no run posts them all before its time is up (a run that does reports a floor:
the "posted" column says). Each row also prints the CPU seconds of the server side (service, workers,
PostgreSQL) and of the client processes, so the sharing of the machine's cores is visible; --before
runs an earlier commit's service (extracted with git archive) next to this one's in the same run.
"""
import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "firmware")]

from cloud.ingest_group import MAX_GROUP  # noqa: E402
from tests.cloud.client import post_jobs  # noqa: E402
from tests.cloud.pgcluster import Cluster  # noqa: E402
from tests.cloud.service import Service, claim_boxes, seal_uploads  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
OLD_COMMIT = "e28d120"
OLD_FIGURE = 89
CLIENT_PROCS = 2
# In-flight uploads offered: a run's rate is at most CONNECTIONS / latency, so too few connections
# measure the load generator (64 capped 1 and 2 workers at about 500-580/s, 128 did not).
CONNECTIONS = 128
LIBERTY = "127.77.50.1"


def _client(args):
    """One client process: wait for the common start, post, report (start, end, results, own CPU seconds)."""
    port, ca_der, jobs, connections, start, deadline = args
    time.sleep(max(0.0, start - time.time()))
    t0, cpu0 = time.time(), time.process_time()
    res = post_jobs(LIBERTY, port, ca_der, jobs, connections, deadline=deadline)
    return t0, time.time(), res, time.process_time() - cpu0


def _stat(pid):
    """(ppid, user + system CPU seconds) of a live process from /proc/PID/stat, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def server_cpu_s(roots):
    """CPU seconds used so far by the processes under `roots` (the service and its workers, the
    PostgreSQL server and its backends), counting every process alive now."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st:
                stats[int(name)] = st
    total = 0.0
    for pid, (_, cpu) in stats.items():
        p = pid
        while p and p not in roots:
            p = stats.get(p, (0, 0))[0]
        if p:
            total += cpu
    return total


def drive(pool, port, ca_der, jobs, seconds, server_pids=(), clients=CLIENT_PROCS, connections=CONNECTIONS):
    """Post jobs from `clients` processes at once -> {per_s, p50_ms, p99_ms, refused, posted, wall_s,
    server_cpu_s, client_cpu_s, per_server_cpu_s}. The clock runs from the first post to the last answer;
    the envelopes were sealed before."""
    start = time.time() + 1.0
    parts = [jobs[i::clients] for i in range(clients)]
    args = [(port, ca_der, part, connections // clients, start, start + seconds) for part in parts]
    cpu0 = server_cpu_s(set(server_pids))
    out = list(pool.map(_client, args))
    cpu = server_cpu_s(set(server_pids)) - cpu0
    t0, t1 = min(o[0] for o in out), max(o[1] for o in out)
    lat, refused = [], 0
    for _, _, res, _ in out:
        for job in res:
            for status, _, seconds_taken in job or ():
                lat.append(seconds_taken)
                refused += status not in (200, 204)
    lat.sort()
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"per_s": len(lat) / (t1 - t0), "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "refused": refused,
            "posted": len(lat), "wall_s": t1 - t0, "server_cpu_s": cpu, "client_cpu_s": sum(o[3] for o in out),
            "per_server_cpu_s": len(lat) / cpu if cpu else 0.0}


def checkout(tmp, commit):
    """That commit's tree, extracted under tmp (its `cloud` package runs the "before" rows)."""
    root = os.path.join(tmp, "checkout-" + commit)
    os.makedirs(root)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", root], input=archive, check=True)
    return root


def old_server(tmp, manifest):
    """The old simulator/cloud.py (with its store, envelope and pki modules) from git, in its own
    process; returns (process, port, CA DER) or None when the commit is not in this clone."""
    pkg = os.path.join(tmp, "old", "simulator")
    os.makedirs(pkg)
    for name in ("cloud", "store", "cloud_envelope", "pki"):
        r = subprocess.run(["git", "show", "%s:simulator/%s.py" % (OLD_COMMIT, name)], cwd=ROOT, capture_output=True)
        if r.returncode:
            return None
        with open(os.path.join(pkg, name + ".py"), "wb") as f:
            f.write(r.stdout)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    state = os.path.join(tmp, "old", "state")
    os.makedirs(state)
    shutil.copy(manifest, os.path.join(state, "manifest.json"))
    launcher = ("import sys, time\nfrom simulator import pki\nfrom simulator.cloud import Cloud\n"
                "s = sys.argv[1]\nca = pki.ensure_ca(s)\n"
                "c = Cloud(s, s + '/cloud.sqlite', s + '/manifest.json', {'liberty': ('%s', 0)}, ca).start()\n"
                "print(c.receivers['liberty'].port, flush=True)\nsys.stdin.read()\nc.stop()\n" % LIBERTY)
    proc = subprocess.Popen([sys.executable, "-c", launcher, state], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=os.path.join(tmp, "old")), cwd=tmp)
    port = int(proc.stdout.readline())
    from simulator import pki
    return proc, port, pki.der(pki.ensure_ca(state)[1])


def claimed(directory, url, keys, root):
    """The boxes of `keys` claimed in the database at `url` (its schema made by the checkout at
    `root`, whose service runs on it), their envelope keys there; returns an empty factory
    manifest's path (provisioning on, nothing to add)."""
    from cloud.store import Store
    subprocess.run([sys.executable, "-m", "cloud", "migrate", url], cwd=root, check=True, capture_output=True)
    store = Store(url, migrate=False)
    try:
        claim_boxes(store, keys)
    finally:
        store.close()
    path = os.path.join(directory, "factory.json")
    with open(path, "w") as f:
        json.dump({"boxes": {}}, f)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boxes", type=int, default=3000)
    ap.add_argument("--uploads", type=int, default=3, help="envelopes per box")
    ap.add_argument("--seconds", type=float, default=8, help="per run: no new box after this")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--group", type=int, default=MAX_GROUP,
                    help="PostgreSQL: uploads per transaction (group commit); 0: one by one")
    ap.add_argument("--one-by-one", action="store_true", help="PostgreSQL: also run each upload in its own transaction")
    ap.add_argument("--before", metavar="COMMIT",
                    help="also run that commit's service (git archive of it) next to this checkout's, each setting")
    ap.add_argument("--no-old", action="store_true", help="skip the old http.server + sqlite3 row")
    ap.add_argument("--clients", type=int, default=CLIENT_PROCS, help="client processes")
    ap.add_argument("--connections", type=int, default=CONNECTIONS, help="TLS connections in all")
    ap.add_argument("--keys", default="provisioned",
                    help="where the service finds the boxes' keys: provisioned (claimed boxes in its database), "
                         "manifest, or both: provisioned,manifest")
    a = ap.parse_args()
    workers = [int(w) for w in a.workers.split(",")]
    key_kinds = a.keys.split(",")
    if not set(key_kinds) <= {"provisioned", "manifest"}:
        ap.error("--keys: provisioned, manifest or both")
    rows = []

    def add(server, database, w, figures):
        rows.append(dict(figures, server=server, database=database, workers=w))
        print("  %-34s %-10s %-7s" % (server, database, w),
              " ".join("%s %.1f" % (k, v) for k, v in figures.items()), flush=True)

    with tempfile.TemporaryDirectory(prefix="fleetbox-bench-") as tmp, \
            ProcessPoolExecutor(a.clients, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(time.sleep, [0.5] * a.clients))      # the client processes started before any clock runs
        os.makedirs(os.path.join(tmp, "keys"))
        setup = Service(os.path.join(tmp, "keys"), "unused")    # its CA and manifest: the boxes' identities
        serials = ["FBX-L%05d" % i for i in range(a.boxes)]
        t = time.time()
        keys = setup.add_boxes(serials)
        jobs = [seal_uploads(s, keys[s], i, a.uploads) for i, s in enumerate(serials)]
        print("sealed %d envelopes for %d boxes with the firmware's modules in %.1f s (%d bytes each)"
              % (a.boxes * a.uploads, a.boxes, time.time() - t, len(jobs[0][0])), flush=True)
        old = None if a.no_old else old_server(tmp, setup.manifest)
        if old:
            proc, port, ca_der = old
            try:
                add("old: http.server + sqlite3", "sqlite", "threads",
                    drive(pool, port, ca_der, jobs, a.seconds, [proc.pid], a.clients, a.connections))
            finally:
                proc.stdin.close()
                proc.wait(30)
        roots = ([("before (%s)" % a.before, checkout(tmp, a.before))] if a.before else []) + [("this checkout", ROOT)]
        cluster = Cluster().start() if "postgresql" in a.backends else None
        try:
            runs = []
            for backend in a.backends.split(","):
                groups = [0] if backend == "sqlite" else [0] * a.one_by_one + ([a.group] if a.group else [0])
                runs += [(backend, w, g, label, root, k) for w in workers for g in dict.fromkeys(groups)
                         for k in key_kinds
                         for label, root in roots]
            for n, (backend, w, group, label, root, key_kind) in enumerate(runs):
                d = os.path.join(tmp, "run%d" % n)
                os.makedirs(d)
                url = "sqlite:///%s/cloud.sqlite" % d if backend == "sqlite" else cluster.create_database("b%d" % n)
                top, client_ca = ["ingest_group = %d" % group], None
                if key_kind == "provisioned":
                    top.append('factory_manifest = "%s"' % claimed(d, url, keys, root))
                    client_ca = {"liberty": os.path.join(setup.dir, "ca.pem")}    # provisioning wants one
                else:
                    shutil.copy(setup.manifest, os.path.join(d, "manifest.json"))
                svc = Service(d, url, workers=w, endpoints={"liberty": LIBERTY}, log_level="warning",
                              top_toml=top, client_ca=client_ca, root=root).start()
                try:
                    figures = drive(pool, svc.port["liberty"], svc.ca_der, jobs, a.seconds,
                                    [svc.proc.pid] + ([cluster.postmaster_pid()] if cluster else []),
                                    a.clients, a.connections)
                finally:
                    svc.stop()
                add("%s, %s%s" % (label, "group %d" % group if group else "one by one",
                                  ", manifest keys" if key_kind == "manifest" else ""), backend, str(w), figures)
        finally:
            if cluster:
                cluster.stop()
    print()
    print("cloud ingest: 8-record full uploads, %d boxes x %d envelopes, %d client connections over HTTPS keep-alive"
          " from %d client processes" % (a.boxes, a.uploads, a.connections, a.clients))
    head = ("server", "database", "workers", "envelopes/s", "p50 ms", "p99 ms", "refused", "posted", "x 89/s",
            "per srv CPU-s", "srv CPU-s", "client CPU-s", "wall s")
    print("%-34s %-10s %-8s %11s %8s %8s %7s %7s %7s %13s %9s %12s %6s" % head)
    for r in rows:
        print("%-34s %-10s %-8s %11.0f %8.1f %8.1f %7d %7d %6.1fx %13.0f %9.1f %12.1f %6.1f"
              % (r["server"], r["database"], r["workers"], r["per_s"], r["p50_ms"], r["p99_ms"], r["refused"],
                 r["posted"], r["per_s"] / OLD_FIGURE, r["per_server_cpu_s"], r["server_cpu_s"], r["client_cpu_s"],
                 r["wall_s"]))
    if any(r["posted"] == a.boxes * a.uploads for r in rows):
        print("(a row that posted all %d envelopes ran out of work before the time: its rate is a floor)"
              % (a.boxes * a.uploads))
    mine = [r for r in rows if r["database"] == "postgresql" and r["server"].startswith("this checkout")]
    if mine:
        best = max(mine, key=lambda r: r["per_s"])
        print("goal: >= 10x 89 envelopes/s on PostgreSQL: best %.0f/s (%s workers) -> %s"
              % (best["per_s"], best["workers"], "met" if best["per_s"] >= 890 else "NOT met"))
        per_cpu = max(r["per_server_cpu_s"] for r in mine)
        client = sum(r["client_cpu_s"] for r in mine) / sum(r["posted"] for r in mine)
        print("server side (workers + PostgreSQL, CPU from /proc): up to %.0f envelopes per CPU-second; the clients"
              " took %.2f ms of CPU per envelope; 890/s needs %.1f cores for the server and %.1f for the clients"
              % (per_cpu, client * 1000, 890 / per_cpu if per_cpu else float("inf"), 890 * client))
        by_w = {}
        for r in mine:
            by_w[r["workers"]] = max(by_w.get(r["workers"], 0), r["per_s"])
        ws = sorted(by_w, key=int)
        print("scaling on PostgreSQL: " + ", ".join("%s worker(s) %.2fx" % (w, by_w[w] / by_w[ws[0]]) for w in ws))
    print(json.dumps({"figures": rows}))


if __name__ == "__main__":
    main()
