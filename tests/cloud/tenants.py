"""Two dealers with customers, sites, boxes, printers and a user of every role, over a store; and an
HTTPS client for the service's read API and pages.

Dealer "Acme" (owns the device keys): customers "Xeno" (site "Xeno HQ": box FBX-X) and "Yarn"
(site "Yarn Mill": box FBX-Y). Dealer "Bolt": customer "Zinc" (site "Zinc Yard": box FBX-Z).
FBX-U has sent data but nobody has claimed it.
"""
import http.client
import json
import ssl
import time

from cloud import accounts, tenancy
from cloud.audit import audit
from simulator import pki

PASSWORD = "correct horse battery"
BOXES = {"FBX-X": "Xeno HQ", "FBX-Y": "Yarn Mill", "FBX-Z": "Zinc Yard", "FBX-U": None}
T0 = 1795000000


def record(box, i, cycle, toner=80, alerts=(), flags=None):
    rec = {"ip": "10.%d.0.%d" % (sorted(BOXES).index(box), 10 + i), "serial": "%s-P%d" % (box[4:], i),
           "manufacturer": "Kyocera" if i % 2 else "HP", "model": "Model %s%d" % (box[4:], i),
           "collected_at": T0 + cycle * 3600 + i, "uptime_s": 1000 + cycle * 3600,
           "counters": {"total": 1000 * (i + 1) + 120 * cycle, "mono": 800 * (i + 1) + 100 * cycle,
                        "color": 200 * (i + 1) + 20 * cycle},
           "supplies": [{"index": 1, "kind": "toner", "color": "black", "description": "Black Toner",
                         "percent": toner, "state": "ok"},
                        {"index": 2, "kind": "toner", "color": "cyan", "description": "Cyan Toner",
                         "percent": 60, "state": "ok"}],
           "status": {"device": "running", "errors": [], "alerts": [dict(a) for a in alerts]}}
    if flags:
        rec["counter_flags"] = list(flags)
    return rec


class World:
    def __init__(self, store, cycles=3):
        self.store = store
        self.users, self.ids = {}, {}
        with store.engine.begin() as c:
            acme = tenancy.add_dealer(c, "Acme", owns_keys=True)
            bolt = tenancy.add_dealer(c, "Bolt")
            xeno, yarn = tenancy.add_customer(c, acme, "Xeno"), tenancy.add_customer(c, acme, "Yarn")
            zinc = tenancy.add_customer(c, bolt, "Zinc")
            self.ids.update(acme=acme, bolt=bolt, xeno=xeno, yarn=yarn, zinc=zinc)
            self.sites = {"Xeno HQ": tenancy.add_site(c, xeno, "Xeno HQ"),
                          "Yarn Mill": tenancy.add_site(c, yarn, "Yarn Mill"),
                          "Zinc Yard": tenancy.add_site(c, zinc, "Zinc Yard")}
            for role in ("administrator", "manager", "technician", "analyst"):
                self._user(c, "%s@acme.example" % role, acme, role)
            self._user(c, "admin@bolt.example", bolt, "administrator")
            self._user(c, "manager@bolt.example", bolt, "manager")
            self._user(c, "user@xeno.example", acme, "customer", xeno)
            self._user(c, "user@yarn.example", acme, "customer", yarn)
            self._user(c, "user@zinc.example", bolt, "customer", zinc)
            for box, site in BOXES.items():
                if site:
                    tenancy.assign_box(c, box, self.sites[site])
        for box in sorted(BOXES):
            for cycle in range(cycles):
                toner = 40 - 12 * cycle if box == "FBX-X" else 80
                recs = [record(box, i, cycle, toner if i == 0 else 80,
                               [{"severity": "warning", "group": "marker", "code": "tonerLow",
                                 "description": "Toner low"}] if box == "FBX-Y" and i == 1 else (),
                               ["backwards:total"] if box == "FBX-X" and i == 1 and cycle == 2 else None)
                        for i in range(2)]
                store.store_upload(box, cycle + 1, cycle + 1, {"scan": "full", "cycle": T0 + cycle * 3600,
                                                               "records": recs, "seen": [], "base": None},
                                   "liberty", 100)

    def _user(self, c, email, dealer, role, customer=None):
        uid = accounts.add_user(c, dealer, email, PASSWORD, role, customer)
        self.users[email] = accounts.issue(c, uid, "token", "test")

    def token(self, email):
        return self.users[email]

    def audit(self, actor_email, action, target, detail=None):
        with self.store.engine.begin() as c:
            uid = c.execute(tenancy.users.select().where(tenancy.users.c.email == actor_email)).first().id
            audit(c, accounts.get_user(c, uid), action, target, detail)


class Http:
    """Plain HTTPS requests to one listener, trusting the test CA."""

    def __init__(self, address, port, ca_der):
        self.address, self.port = address, port
        self.ctx = ssl.create_default_context(cadata=ca_der)

    def request(self, method, path, token=None, cookie=None, body=None, headers=None):
        """(status, headers dict with lower-case names, body bytes)."""
        conn = http.client.HTTPSConnection(self.address, self.port, context=self.ctx, timeout=20)
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        if cookie:
            h["Cookie"] = cookie
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def get_json(self, path, token=None):
        status, _, body = self.request("GET", path, token)
        return status, json.loads(body) if body else None


def http_for(kit, name="liberty"):
    r = kit.cloud.receivers[name]
    return Http(r.address, r.port, pki.der(kit.ca[1]))


def wait_for(pred, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False
