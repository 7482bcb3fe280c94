"""`python -m cloud serve` on its own: several worker processes over one PostgreSQL database store
each of the same envelopes, posted at once by several client processes, exactly once; a worker
that dies is replaced; SIGTERM stops it; every log line is one JSON object."""
import collections
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor

import pytest
from sqlalchemy import func, select

from cloud import downlink
from cloud.schema import readings, uploads
from cloud.store import Store
from tests.cloud.client import post_jobs, post_jobs_in_process
from tests.cloud.service import Service, seal_uploads

BOXES, UPLOADS, RECORDS, CLIENTS = 12, 6, 8, 3


@pytest.fixture
def service(tmp_path, request):
    svcs = []

    def make(database, workers):
        svc = Service(str(tmp_path), database, workers=workers)
        svcs.append(svc)
        return svc
    yield make
    for svc in svcs:
        svc.stop()


def boxes_envelopes(svc):
    serials = ["FBX-C%03d" % i for i in range(BOXES)]
    keys = svc.box_keys = svc.add_boxes(serials)
    return serials, [seal_uploads(s, keys[s], i, UPLOADS, RECORDS) for i, s in enumerate(serials)]


def test_several_workers_store_the_same_envelopes_from_several_clients_exactly_once(service, pg_url):
    svc = service(pg_url, workers=4).start()
    serials, jobs = boxes_envelopes(svc)
    args = ("127.77.30.1", svc.port["liberty"], svc.ca_der, jobs, 8)
    with ProcessPoolExecutor(CLIENTS, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(post_jobs_in_process, [args] * CLIENTS))
    outcome = collections.Counter()
    down = collections.Counter()
    for per_client in results:
        for serial, job in zip(serials, per_client):
            for status, reply, _ in job:
                hdr, body = downlink.open_answer((1, svc.box_keys[serial]), serial, reply)
                down[serial, hdr["seq"]] += 1
                if status == 200 and body.get("duplicate"):
                    outcome["duplicate"] += 1
                elif status == 200:
                    outcome["stored"] += 1
                else:
                    assert status == 409 and body["reason"] == "replay", (status, body)
                    outcome["replay"] += 1
    assert outcome["stored"] == BOXES * UPLOADS                    # each envelope stored by one worker
    assert sum(outcome.values()) == CLIENTS * BOXES * UPLOADS
    assert set(down.values()) == {1}            # every answer to a box under its own down seq
    store = Store(pg_url, migrate=False)
    with store.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(uploads)).scalar() == BOXES * UPLOADS
        assert c.execute(select(func.count()).select_from(readings)).scalar() == BOXES * UPLOADS * RECORDS
        per_box = dict(c.execute(select(uploads.c.box, func.count()).group_by(uploads.c.box)).all())
    assert per_box == {s: UPLOADS for s in serials}
    assert {b["box"]: b["last_seq"] for b in store.boxes()} == {s: UPLOADS for s in serials}
    store.close()
    stored_by = {e["pid"] for e in svc.logs() if e.get("event") == "stored"}
    assert len(stored_by) >= 2                                     # the work was shared among processes
    assert svc.stop() == 0


def test_a_dead_worker_is_replaced_and_the_service_stops_on_sigterm(service, tmp_path):
    svc = service("sqlite:///%s" % (tmp_path / "cloud.sqlite"), workers=2).start()
    serials, jobs = boxes_envelopes(svc)
    workers = [e["pid"] for e in svc.logs() if e.get("event") == "worker-start"]
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.time() + 30
    while time.time() < deadline and sum(1 for e in svc.logs() if e.get("event") == "worker-start") < 3:
        time.sleep(0.2)
    died = [e for e in svc.logs() if e.get("event") == "worker-died"]
    assert died and died[0]["pid"] == workers[0] and died[0]["level"] == "error"
    res = post_jobs("127.77.30.2", svc.port["rescue"], svc.ca_der, jobs, 4, "rescue.fleetbox.test")
    assert {s for job in res for s, _, _ in job} == {200}
    assert svc.stop() == 0
    lines = svc.logs()                                             # raises unless every line is JSON
    assert {"listening", "worker-start", "stored", "stopped"} <= {e.get("event") for e in lines}
    assert all({"ts", "level", "logger", "pid", "msg"} <= set(e) for e in lines)
