"""Accounts, tenants and roles over the real service (HTTPS on loopback), on SQLite and PostgreSQL:
every read endpoint refuses anonymous callers, nobody reads another tenant's data, roles limit
what may be done, and the audit log records it; the CSV export for billing."""
import csv
import io
import itertools
import json
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from cloud import accounts, audit, tenancy
from cloud.app import Limits
from tests.cloud.tenants import BOXES, PASSWORD, T0, World, http_for
from tests.uplink_kit import Kit

_hosts = itertools.count(10)

# Every read route with arguments naming a box and device the caller may or may not see: {box} is filled in.
READS = ["/v1/boxes", "/v1/devices", "/v1/devices?box={box}", "/v1/device?box={box}&device={dev}",
         "/v1/history?box={box}&device={dev}", "/v1/alerts", "/v1/me", "/v1/audit",
         "/v1/export/counters.csv?from=0&to=2000000000"]
VISIBLE = {
    "administrator@acme.example": {"FBX-X", "FBX-Y", "FBX-U"},
    "manager@acme.example": {"FBX-X", "FBX-Y"},
    "technician@acme.example": {"FBX-X", "FBX-Y"},
    "analyst@acme.example": {"FBX-X", "FBX-Y"},
    "admin@bolt.example": {"FBX-Z"},
    "manager@bolt.example": {"FBX-Z"},
    "user@xeno.example": {"FBX-X"},
    "user@yarn.example": {"FBX-Y"},
    "user@zinc.example": {"FBX-Z"},
}


def dev(box):
    return "%s-P0" % box[4:]


@pytest.fixture
def world(tmp_path, database):
    d = tmp_path / "cloud"
    d.mkdir()
    h = next(_hosts)
    kit = Kit(str(d), ("127.77.42.%d" % h, 0), ("127.77.43.%d" % h, 0), database=database,
              limits=Limits(max_body=65536, body_timeout_s=2.0)).start()
    w = World(kit.store)
    w.kit, w.http = kit, http_for(kit)
    yield w
    kit.stop()


def test_every_read_endpoint_refuses_anonymous_callers_and_bad_credentials(world):
    with world.store.engine.begin() as c:
        uid = c.execute(select(tenancy.users.c.id).where(tenancy.users.c.email == "manager@acme.example")).scalar()
        expired = accounts.issue(c, uid, "token", "old", ttl_s=-1)
        session = accounts.issue(c, uid, "session")
    for path in READS:
        path = path.format(box="FBX-X", dev=dev("FBX-X"))
        status, headers, body = world.http.request("GET", path)
        assert status == 401, path
        assert json.loads(body) == {"ok": False, "reason": "unauthenticated"}
        assert headers["www-authenticate"].startswith("Bearer")
        for bad in ("fbt_nonsense", expired, session, world.token("manager@acme.example")[:-2]):
            assert world.http.request("GET", path, bad)[0] == 401, (path, bad)
        # a session belongs in the cookie, and a token does not work as one
        assert world.http.request("GET", path, cookie="fleetbox_session=" + world.token("manager@acme.example"))[0] \
            == 401


def test_nobody_reads_another_tenants_boxes_devices_history_or_counters(world):
    for email, visible in VISIBLE.items():
        token = world.token(email)
        status, boxes = world.http.get_json("/v1/boxes", token)
        assert status == 200 and {b["box"] for b in boxes} == visible, email
        status, devs = world.http.get_json("/v1/devices", token)
        assert {d["serial"].split("-")[0] for d in devs} == {b[4:] for b in visible}, email
        _, alerts = world.http.get_json("/v1/alerts", token)
        assert {a["box"] for a in alerts} == visible & {"FBX-Y"}, email
        status, _, body = world.http.request("GET", "/v1/export/counters.csv?from=0&to=2000000000", token)
        if status == 200:
            assert {r["box"] for r in csv.DictReader(io.StringIO(body.decode()))} == visible, email
        for box in BOXES:
            paths = ["/v1/device?box=%s&device=%s" % (box, dev(box)),
                     "/v1/history?box=%s&device=%s" % (box, dev(box)), "/v1/devices?box=%s" % box]
            s_dev, one = world.http.get_json(paths[0], token)
            s_hist, hist = world.http.get_json(paths[1], token)
            _, devs = world.http.get_json(paths[2], token)
            if box in visible:
                assert s_dev == 200 and one["serial"] == dev(box) and len(hist) == 3 and len(devs) == 2, (email, box)
            else:       # the same answer as a box that does not exist
                assert (s_dev, one) == (404, {"ok": False, "reason": "no such device"}), (email, box)
                assert (s_hist, hist, devs) == (200, [], []), (email, box)


def test_roles_limit_what_may_be_done(world):
    expect = {"administrator@acme.example": (200, 200), "manager@acme.example": (200, 200),
              "technician@acme.example": (403, 403), "analyst@acme.example": (403, 200),
              "user@xeno.example": (403, 200)}
    for email, (audit_status, export_status) in expect.items():
        token = world.token(email)
        assert world.http.request("GET", "/v1/audit", token)[0] == audit_status, email
        assert world.http.request("GET", "/v1/export/counters.csv?from=0&to=2000000000", token)[0] \
            == export_status, email
    status, me = world.http.get_json("/v1/me", world.token("user@xeno.example"))
    assert status == 200 and me["role"] == "customer" and me["customer"] == world.ids["xeno"]


def test_a_claimed_box_moves_to_its_tenant_and_the_audit_log_keeps_each_dealers_own(world):
    admin_b = world.token("admin@bolt.example")
    assert {b["box"] for b in world.http.get_json("/v1/boxes", admin_b)[1]} == {"FBX-Z"}
    with world.store.engine.begin() as c:            # what claiming (cloud/provision.py) does
        tenancy.assign_box(c, "FBX-U", world.sites["Zinc Yard"])
        tenancy.set_box_info(c, "FBX-U", firmware="1.4.2", state="provisioned")
        audit.audit(c, "box:FBX-U", "claim", "box:FBX-U", {"site": world.sites["Zinc Yard"]},
                    dealer_id=world.ids["bolt"])
    boxes = {b["box"]: b for b in world.http.get_json("/v1/boxes", admin_b)[1]}
    assert set(boxes) == {"FBX-U", "FBX-Z"}
    assert (boxes["FBX-U"]["site"], boxes["FBX-U"]["firmware"], boxes["FBX-U"]["state"]) == \
        ("Zinc Yard", "1.4.2", "provisioned")
    assert "FBX-U" not in {b["box"] for b in world.http.get_json("/v1/boxes", world.token(
        "administrator@acme.example"))[1]}
    assert "FBX-U" in {b["box"] for b in world.http.get_json("/v1/boxes", world.token("user@zinc.example"))[1]}
    world.audit("manager@acme.example", "config", "box:FBX-X", {"interval_s": 300})
    _, acme_log = world.http.get_json("/v1/audit", world.token("administrator@acme.example"))
    _, bolt_log = world.http.get_json("/v1/audit", admin_b)
    assert [(e["actor"], e["action"], e["target"]) for e in acme_log] == \
        [("manager@acme.example", "config", "box:FBX-X")]
    assert [(e["actor"], e["action"], e["target"], json.loads(e["detail"])) for e in bolt_log] == \
        [("box:FBX-U", "claim", "box:FBX-U", {"site": world.sites["Zinc Yard"]})]
    with world.store.engine.begin() as c:
        tenancy.assign_box(c, "FBX-U", None)
    assert {b["box"] for b in world.http.get_json("/v1/boxes", admin_b)[1]} == {"FBX-Z"}
    with world.store.engine.begin() as c, pytest.raises(tenancy.TenancyError):
        tenancy.assign_box(c, "FBX-U", 9999)


def test_counter_export_for_billing_carries_sanity_flags_and_is_audited(world):
    token = world.token("manager@acme.example")
    status, headers, body = world.http.request(
        "GET", "/v1/export/counters.csv?from=%d&to=%d" % (T0, T0 + 3 * 3600), token)
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert "attachment" in headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(rows) == 2 * 2 * 3                                   # 2 boxes, 2 printers, 3 readings
    x1 = [r for r in rows if r["serial"] == "X-P1"]
    assert [int(r["total"]) for r in x1] == [2000, 2120, 2240]
    assert [r["flags"] for r in x1] == ["", "", "backwards:total"]
    assert (x1[0]["customer"], x1[0]["site"], x1[0]["collected_at"]) == ("Xeno", "Xeno HQ", "2026-11-18T11:06:41Z")
    assert list(rows[0])[7:12] == ["collected_at", "total", "mono", "color", "flags"]
    # the billing period: first and last reading per printer, pages in between; a window narrows it
    status, _, body = world.http.request(
        "GET", "/v1/export/counters.csv?from=%d&to=%d&kind=period" % (T0 + 3600, T0 + 3 * 3600), token)
    period = {r["serial"]: r for r in csv.DictReader(io.StringIO(body.decode()))}
    assert set(period) == {"X-P0", "X-P1", "Y-P0", "Y-P1"}
    assert (period["X-P1"]["readings"], period["X-P1"]["total_first"], period["X-P1"]["total_last"],
            period["X-P1"]["total_pages"], period["X-P1"]["flags"]) == ("2", "2120", "2240", "120", "backwards:total")
    # one customer only; and an ISO date works as well as UNIX seconds
    status, _, body = world.http.request(
        "GET", "/v1/export/counters.csv?from=2020-01-01&to=2040-01-01&customer=%d" % world.ids["yarn"], token)
    assert {r["customer"] for r in csv.DictReader(io.StringIO(body.decode()))} == {"Yarn"}
    assert world.http.request("GET", "/v1/export/counters.csv?from=x&to=1", token)[0] == 400
    _, log = world.http.get_json("/v1/audit", world.token("administrator@acme.example"))
    exports = [e for e in log if e["action"] == "export"]
    assert len(exports) == 3 and {e["actor"] for e in exports} == {"manager@acme.example"}
    assert json.loads(exports[-1]["detail"])["rows"] == 12
    # a customer's user exporting another customer's id gets nothing of it
    status, _, body = world.http.request(
        "GET", "/v1/export/counters.csv?from=0&to=2000000000&customer=%d" % world.ids["yarn"],
        world.token("user@xeno.example"))
    assert status == 200 and list(csv.DictReader(io.StringIO(body.decode()))) == []


def test_passwords_sessions_and_tokens(database):
    from cloud.store import Store
    store = Store(database)
    with store.engine.begin() as c:
        d = tenancy.add_dealer(c, "D")
        uid = accounts.add_user(c, d, " Someone@Example.org ", PASSWORD, "analyst")
        stored = c.execute(select(tenancy.users.c.password).where(tenancy.users.c.id == uid)).scalar()
        assert stored.startswith("scrypt$") and PASSWORD not in stored
        assert accounts.sign_in(c, "someone@example.org", PASSWORD).id == uid
        assert accounts.sign_in(c, "someone@example.org", PASSWORD + "x") is None
        assert accounts.sign_in(c, "nobody@example.org", PASSWORD) is None
        token = accounts.issue(c, uid, "token", "fbtool")
        assert accounts.user_for(c, token, "token").email == "someone@example.org"
        assert accounts.user_for(c, token, "session") is None
        digests = [r[0] for r in c.execute(select(tenancy.credentials.c.digest))]
        assert token not in digests and len(digests) == 1
        assert accounts.revoke(c, token) and accounts.user_for(c, token, "token") is None
        token = accounts.issue(c, uid, "token")
        c.execute(tenancy.users.update().values(disabled=True))
        assert accounts.user_for(c, token, "token") is None and accounts.sign_in(c, "someone@example.org",
                                                                                  PASSWORD) is None
        for bad in [("x@y", PASSWORD, "owner", None), ("x@y", "short", "analyst", None),
                    ("x@y", PASSWORD, "customer", None)]:
            with pytest.raises(accounts.AccountError):
                accounts.add_user(c, d, *bad)
    store.close()


def test_the_command_line_creates_the_first_administrator_and_tokens(tmp_path, database):
    cmd = [sys.executable, "-m", "cloud", "admin", database]

    def run(*args, stdin=None):
        r = subprocess.run(cmd + list(args), input=stdin, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    assert "administrator" in run("bootstrap", "--dealer", "Acme", "--email", "boss@acme.example",
                                  stdin=PASSWORD + "\n")
    r = subprocess.run(cmd + ["bootstrap", "--dealer", "Other", "--email", "x@y.z"], input=PASSWORD + "\n",
                       capture_output=True, text=True)
    assert r.returncode == 78 and "users already" in r.stderr
    run("customer", "--dealer", "Acme", "Xeno")
    run("site", "--dealer", "Acme", "--customer", "Xeno", "HQ")
    run("user", "--dealer", "Acme", "--email", "u@xeno.example", "--role", "customer", "--customer", "Xeno",
        stdin=PASSWORD + "\n")
    run("assign", "FBX-1", "--dealer", "Acme", "--customer", "Xeno", "--site", "HQ")
    run("rule", "--dealer", "Acme", "--customer", "Xeno", "--kind", "toner", "--threshold", "10",
        "--to", "ops@xeno.example")
    token = run("token", "--email", "u@xeno.example", "--label", "fbtool", "--days", "30")
    assert token.startswith("fbt_")
    from cloud.store import Store
    store = Store(database)
    with store.engine.begin() as c:
        user = accounts.user_for(c, token, "token")
        assert (user.email, user.role) == ("u@xeno.example", "customer")
        assert c.execute(select(tenancy.box_sites.c.box)).scalars().all() == ["FBX-1"]
        boss = accounts.sign_in(c, "boss@acme.example", PASSWORD)
        assert boss.role == "administrator" and boss.owns_keys
        log = audit.entries(c, boss.dealer_id)
        expires = c.execute(select(tenancy.credentials.c.expires)).scalar()
    assert 29 * 86400 < expires - time.time() <= 30 * 86400
    assert [e["action"] for e in reversed(log)] == ["user", "config", "config", "user", "claim", "rule", "token"]
    assert all(e["actor"].startswith("cli:") for e in log)
    store.close()
