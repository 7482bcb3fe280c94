"""Provisioning between the box's own modules (on CPython) and the cloud over real mutual TLS on
loopback: claim, key and sealed configuration, refusal reporting, pin rotation with overlap,
data-key rotation, clone detection and quarantine, the read API without secrets; the dealer's
side through accounts (roles, tenants, the audit log)."""
import asyncio
import base64
import itertools
import json
import os
import time

import pytest

from cloud import accounts, tenancy
from cloud import audit as cloud_audit
from cloud import downlink as cloud_downlink
from cloud.server import Cloud
from fbtool import factory
from fleetbox import cbor, config, envelope, https, provision
from simulator import pki
from tests.interop.test_uplink import T0, sample_records

SERIAL = "PRV-0001"
_hosts = itertools.count(1)
run = asyncio.run


class Fleet:
    """A cloud in factory mode and one factory-fresh box's identity."""

    def __init__(self, d):
        self.dir = str(d)
        self.ca = pki.ensure_ca(self.dir)
        self.fca = factory.ensure_factory_ca(os.path.join(self.dir, "factory"))
        self.fmanifest = os.path.join(self.dir, "factory-manifest.json")
        with open(os.path.join(self.dir, "manifest.json"), "w") as f:
            f.write("{}")
        addr = "127.77.51.%d" % next(_hosts)
        self.cloud = Cloud(self.dir, os.path.join(self.dir, "cloud.sqlite"), os.path.join(self.dir, "manifest.json"),
                           {"liberty": (addr, 0)}, self.ca,
                           factory=(self.fmanifest, os.path.join(self.dir, "factory", "factory-ca.pem"))).start()
        self.liberty = self.cloud.receivers["liberty"]
        self.prov = self.cloud.provisioning
        self.url = "https://liberty.fleetbox.test:%d" % self.liberty.port
        self.identity, entry, self.code = factory.make(
            SERIAL, self.fca, pki.der(self.ca[1]), [pki.spki_pin(self.liberty.cert)],
            [{"name": "liberty", "url": self.url + "/v1/provision", "resolve": addr}])
        factory.add_to_manifest(self.fmanifest, SERIAL, entry)
        self.box_dir = os.path.join(self.dir, "box")
        os.makedirs(self.box_dir)
        self._accounts()

    def _accounts(self):
        """Dealer A (site "A HQ") with a user of each dealer-staff role, dealer B (site "B HQ") with a technician."""
        self.users, self.tokens = {}, {}
        with self.cloud.store.engine.begin() as c:
            self.dealer_a = tenancy.add_dealer(c, "A", owns_keys=True)
            self.dealer_b = tenancy.add_dealer(c, "B")
            self.site = tenancy.add_site(c, tenancy.add_customer(c, self.dealer_a, "A Customer"), "A HQ")
            self.site_b = tenancy.add_site(c, tenancy.add_customer(c, self.dealer_b, "B Customer"), "B HQ")
            for email, dealer, role in (("admin@a", self.dealer_a, "administrator"),
                                        ("manager@a", self.dealer_a, "manager"),
                                        ("tech@a", self.dealer_a, "technician"),
                                        ("analyst@a", self.dealer_a, "analyst"),
                                        ("tech@b", self.dealer_b, "technician")):
                uid = accounts.add_user(c, dealer, email, "password-for-tests", role)
                self.tokens[email] = accounts.issue(c, uid, "token", "test")
                self.users[email] = accounts.get_user(c, uid)
        self.tech, self.manager = self.users["tech@a"], self.users["manager@a"]

    def api(self, method, path, token=None, body=None):
        """(status, JSON) of a dealer's call as fbtool cloud makes it."""
        import http.client
        import ssl
        conn = http.client.HTTPSConnection(self.liberty.address, self.liberty.port, timeout=20,
                                           context=ssl.create_default_context(cadata=pki.der(self.ca[1])))
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        return r.status, json.loads(data) if data else None

    def audit_log(self, dealer):
        with self.cloud.store.engine.connect() as c:
            return [(e["actor"], e["action"], e["target"]) for e in reversed(cloud_audit.entries(c, dealer))]

    def box_place(self):
        with self.cloud.store.engine.connect() as c:
            return tenancy.box_places(c, [SERIAL]).get(SERIAL)

    def box(self):
        return provision.Provisioner(json.loads(json.dumps(self.identity)), self.box_dir)

    def box_cfg(self, **extra):
        cfg = {"targets": ["127.0.0.1"], "intervals": {"full": 60}}
        cfg.update(extra)
        return cfg

    def post(self, path, body, pins=None):
        status, reply = https.request("POST", self.url + path, body, pki.der(self.ca[1]),
                                      pins or [bytes.fromhex(pki.spki_pin(self.liberty.cert))], self.liberty.address)
        return status, json.loads(reply) if reply else None

    def stop(self):
        self.cloud.stop()


@pytest.fixture
def fleet(tmp_path):
    f = Fleet(tmp_path)
    try:
        yield f
    finally:
        f.stop()


def claimed(fleet, cfg=None):
    assert fleet.prov.claim(fleet.tech, SERIAL, fleet.code, fleet.site)[0] == 200
    fleet.prov.set_config(fleet.tech, SERIAL, cfg or fleet.box_cfg())
    box = fleet.box()
    assert run(box.check()) == "updated"
    return box


def test_unclaimed_then_claimed_then_current(fleet):
    box = fleet.box()
    assert run(box.check()) == "unclaimed"
    assert box.load() is None
    wrong = fleet.prov.claim(fleet.tech, SERIAL, "WRONG-CODE", fleet.site)
    assert wrong == (403, {"ok": False, "reason": "wrong-code"})
    assert fleet.prov.claim(fleet.tech, SERIAL, fleet.code.lower(), fleet.site)[0] == 200   # as typed from the label
    assert fleet.box_place() == {"site": "A HQ", "customer": "A Customer", "firmware": None, "state": "claimed"}
    assert run(box.check()) == "current"        # claimed, but no configuration yet: the key only
    assert fleet.box_place()["state"] == "provisioned"
    assert box.keys["kid"] == 1
    fleet.prov.set_config(fleet.tech, SERIAL, fleet.box_cfg())
    assert run(box.check()) == "updated"
    assert run(box.check()) == "current"
    again = fleet.box()                         # after a reboot: what is on flash
    assert again.load()["targets"] == ["127.0.0.1"] and again.identity()["kid"] == 1
    v = fleet.prov.view(SERIAL)[0]
    assert v["running_version"] == 1 and v["state"] == "claimed"
    assert not {"env_key", "claim_hash", "claim_salt", "cert"} & set(v)


def test_the_cloud_checks_the_certificate_not_only_the_serial(fleet):
    other = factory.make("OTHER-1", fleet.fca, pki.der(fleet.ca[1]), [pki.spki_pin(fleet.liberty.cert)],
                         fleet.identity["provision"])[0]
    other["serial"] = SERIAL                    # a genuine factory certificate claiming another serial
    box = provision.Provisioner(other, fleet.box_dir)
    with pytest.raises(provision.ProvisionError) as e:
        run(box.check())
    assert "wrong-certificate" in str(e.value)
    status, reply = fleet.post("/v1/provision", json.dumps({"serial": SERIAL}).encode())
    assert status == 403 and reply["reason"] == "no-certificate"


def test_a_bad_configuration_is_refused_reported_and_the_old_one_stays(fleet):
    box = claimed(fleet)
    for bad, why in (({"targets": ["10.0.0.0/8"]}, "addresses"), ({"pins": ["ab" * 31]}, "32 bytes"),
                     ({"surprise": 1}, "unknown key"), ({"proxy": {"url": "http://p:1\r\nX: y"}}, "control"),
                     ({"snmp_v3": [{"user": "u", "auth": "SHA", "auth_pass": "short"}]}, "snmp_v3")):
        fleet.prov.set_config(fleet.tech, SERIAL, fleet.box_cfg(**bad))
        assert run(box.check()) == "refused"
        assert run(box.check()) == "current"    # refused once is refused: not offered again and again
        v = fleet.prov.view(SERIAL)[0]
        assert why in v["refused_reason"] and v["running_version"] == 1, (bad, v)
        assert fleet.box().load()["targets"] == ["127.0.0.1"]


def test_a_forged_or_replayed_configuration_answer_is_refused(fleet):
    box = claimed(fleet)
    key = bytes.fromhex(box.keys["key"])
    plain = cbor.dumps({"config": {"v": 9, "body": fleet.box_cfg(targets=["127.0.0.9"])}})
    forged = envelope.seal(bytes(32), box.keys["kid"], SERIAL, 99, int(time.time()), plain, 2, None, envelope.DOWN)
    with pytest.raises(provision.ProvisionError) as e:
        box._answer(200, json.dumps({"answer": base64.b64encode(forged).decode()}).encode())
    assert "bad-mac" in str(e.value)
    old = envelope.seal(key, box.keys["kid"], SERIAL, box.down.last, int(time.time()), plain, 2, None, envelope.DOWN)
    with pytest.raises(provision.ProvisionError) as e:
        box._answer(200, json.dumps({"answer": base64.b64encode(old).decode()}).encode())
    assert "replay" in str(e.value)
    assert fleet.box().load()["targets"] == ["127.0.0.1"]


def test_pin_rotation_with_overlap_never_strands_the_box(fleet):
    old_pin = pki.spki_pin(fleet.liberty.cert)
    new_cert, new_key = pki.ensure_server(fleet.dir, "liberty-next", "liberty.fleetbox.test",
                                          [fleet.liberty.address], fleet.ca)
    new_pin = pki.spki_pin(new_cert)
    ca64 = base64.b64encode(pki.der(fleet.ca[1])).decode()
    box = claimed(fleet, fleet.box_cfg(ca=ca64, pins=[old_pin, new_pin]))   # 1. both pins
    fleet.liberty.stop()                                                    # 2. the server's new key
    fleet.liberty.cert, fleet.liberty.key = new_cert, new_key
    fleet.liberty.start()
    fleet.prov.set_config(fleet.tech, SERIAL, fleet.box_cfg(ca=ca64, pins=[new_pin]))   # 3. the old pin goes
    assert run(box.check()) == "updated"
    assert box.cfg["pins"] == [bytes.fromhex(new_pin)]
    # a configuration whose pins match no server: the box falls back to the factory's pin set...
    fleet.prov.set_config(fleet.tech, SERIAL, fleet.box_cfg(ca=ca64, pins=["ab" * 32]))
    assert run(box.check()) == "updated"
    fleet.liberty.stop()                                                    # ...which is the old key's
    fleet.liberty.cert, fleet.liberty.key = pki.ensure_server(fleet.dir, "liberty", "x", [], fleet.ca)
    fleet.liberty.start()
    fleet.prov.set_config(fleet.tech, SERIAL, fleet.box_cfg(ca=ca64, pins=[old_pin]))
    assert run(box.check()) == "updated"       # reached through the factory pins: not stranded


def _ingest(fleet, key, kid, seq):
    """(status, answer fields): a sealed answer opened with the key, a plain refusal as JSON."""
    pt = cbor.dumps({"v": 1, "upload": seq}) + cbor.dumps({"scan": "full", "cycle": T0,
                                                           "records": sample_records(0, 1)})
    body = envelope.seal(key, kid, SERIAL, seq, int(time.time()), pt)
    status, reply = https.request("POST", fleet.url + "/v1/ingest", body, pki.der(fleet.ca[1]),
                                  [bytes.fromhex(pki.spki_pin(fleet.liberty.cert))], fleet.liberty.address)
    try:
        return status, json.loads(reply)
    except ValueError:
        return status, cloud_downlink.open_answer((kid, key), SERIAL, reply)[1]


def test_interleaved_sequence_numbers_raise_a_clone_alert_and_quarantine(fleet):
    box = claimed(fleet)
    key, kid = bytes.fromhex(box.keys["key"]), box.keys["kid"]
    assert _ingest(fleet, key, kid, 1)[0] in (200, 204)
    fleet.prov.set_config(fleet.tech, SERIAL, fleet.box_cfg(targets=["127.0.0.2"]))
    status, ans = _ingest(fleet, key, kid, 2)
    assert status == 200 and ans["config"] == {"v": 2}       # the sealed answer says: a newer configuration
    # a box whose counter was lost skips ahead once: no alert
    assert _ingest(fleet, key, kid, 1)[0] == 409
    assert fleet.prov.view(SERIAL)[0]["quarantined"] == 0
    # two holders of the key, each going on with its own counter
    assert _ingest(fleet, key, kid, 3)[0] in (200, 204)
    assert _ingest(fleet, key, kid, 2)[0] == 409
    assert _ingest(fleet, key, kid, 4)[0] in (200, 204)
    assert _ingest(fleet, key, kid, 3)[0] == 409
    v = fleet.prov.view(SERIAL)[0]
    assert v["quarantined"] == 1 and [a for a in v["alerts"] if a["resolved"] is None]
    assert fleet.box_place()["state"] == "quarantined"
    status, reply = _ingest(fleet, key, kid, 10)
    assert status == 403 and reply["reason"] == "quarantined"
    assert fleet.prov.view(SERIAL)[0]["quarantined_uploads"] == 1
    assert fleet.cloud.store.last_seq(SERIAL) == 4          # nothing of the quarantined upload stored
    assert fleet.prov.release(fleet.manager, SERIAL)[0] == 200             # a person decided
    assert fleet.box_place()["state"] == "provisioned"
    assert _ingest(fleet, key, kid, 11)[0] in (200, 204)


def test_data_key_rotation_and_revocation(fleet):
    box = claimed(fleet)
    old = dict(box.keys)
    assert fleet.prov.rotate_key(fleet.tech, SERIAL) == (200, {"ok": True, "serial": SERIAL, "kid": old["kid"] + 1})
    assert run(box.check()) == "current" and box.keys["kid"] == old["kid"] + 1 and box.keys["key"] != old["key"]
    assert _ingest(fleet, bytes.fromhex(old["key"]), old["kid"], 1)[0] == 403          # the old key is gone
    assert _ingest(fleet, bytes.fromhex(box.keys["key"]), box.keys["kid"], 1)[0] in (200, 204)
    fleet.prov.revoke(fleet.manager, SERIAL)
    with pytest.raises(provision.Revoked):
        run(box.check())
    assert _ingest(fleet, bytes.fromhex(box.keys["key"]), box.keys["kid"], 2)[0] == 403
    assert fleet.prov.claim(fleet.tech, SERIAL, fleet.code, fleet.site)[0] == 409


def test_dealer_routes_need_a_signed_in_user_with_the_permission(fleet):
    body = {"serial": SERIAL, "code": fleet.code, "site": fleet.site}
    assert fleet.api("POST", "/v1/claim", None, body)[0] == 401
    assert fleet.api("POST", "/v1/claim", "fbt_not-a-token", body)[0] == 401
    assert fleet.api("GET", "/v1/provisioning")[0] == 401
    assert fleet.api("POST", "/v1/claim", fleet.tokens["analyst@a"], body)[0] == 403
    assert fleet.api("POST", "/v1/revoke", fleet.tokens["tech@a"], {"serial": SERIAL})[0] == 403
    fleet.prov.sync_manifest()
    assert fleet.box_place() is None and fleet.prov.view(SERIAL)[0]["state"] == "unclaimed"
    assert config.check(fleet.box_cfg())["targets"] == ["127.0.0.1"]


def test_a_dealer_claims_only_into_its_own_sites_and_only_its_own_boxes(fleet):
    tech_a, tech_b = fleet.tokens["tech@a"], fleet.tokens["tech@b"]
    status, out = fleet.api("POST", "/v1/claim", tech_a, {"serial": SERIAL, "code": fleet.code, "site": fleet.site_b})
    assert (status, out["reason"]) == (404, "unknown-site")       # B's site is not A's to name
    assert fleet.api("POST", "/v1/claim", tech_b, {"serial": SERIAL, "code": fleet.code, "site": fleet.site})[0] == 404
    assert fleet.box_place() is None
    assert fleet.api("POST", "/v1/claim", tech_a, {"serial": SERIAL, "code": fleet.code, "site": fleet.site})[0] == 200
    # B's staff neither see nor touch A's box: "not found", as for a box that does not exist
    assert fleet.api("GET", "/v1/provisioning?serial=" + SERIAL, tech_b) == (200, [])
    assert fleet.api("PUT", "/v1/config", tech_b, {"serial": SERIAL, "config": fleet.box_cfg()})[0] == 404
    assert fleet.api("POST", "/v1/unclaim", tech_b, {"serial": SERIAL})[0] == 404
    assert fleet.api("POST", "/v1/claim", tech_b, {"serial": SERIAL, "code": fleet.code, "site": fleet.site_b}) == \
        (409, {"ok": False, "reason": "claimed-by-another"})
    assert fleet.box_place()["site"] == "A HQ"
    status, rows = fleet.api("GET", "/v1/provisioning", tech_a)
    assert status == 200 and [r["serial"] for r in rows] == [SERIAL] and rows[0]["site"] == "A HQ"


def test_claim_config_unclaim_revoke_are_audited_without_secrets(fleet):
    tech, manager = fleet.tokens["tech@a"], fleet.tokens["manager@a"]
    claim = {"serial": SERIAL, "code": fleet.code, "site": fleet.site}
    assert fleet.api("POST", "/v1/claim", tech, dict(claim, code="WRONG"))[0] == 403
    assert fleet.api("POST", "/v1/claim", tech, claim)[0] == 200
    cfg = fleet.box_cfg(communities=["s3cr3t"])
    status, out = fleet.api("PUT", "/v1/config", tech, {"serial": SERIAL, "config": cfg})
    assert (status, out["version"]) == (200, 1)
    assert fleet.api("POST", "/v1/rotate-key", tech, {"serial": SERIAL}) == (200, {"ok": True, "serial": SERIAL,
                                                                                  "kid": 1})
    assert fleet.api("POST", "/v1/unclaim", tech, {"serial": SERIAL})[0] == 200
    assert fleet.box_place() is None
    assert fleet.api("POST", "/v1/claim", tech, claim)[0] == 200
    assert fleet.api("POST", "/v1/revoke", manager, {"serial": SERIAL})[0] == 200
    assert fleet.box_place()["state"] == "revoked"
    assert fleet.api("POST", "/v1/unclaim", tech, {"serial": SERIAL})[0] == 409       # revoked stays revoked
    box = "box:" + SERIAL
    assert fleet.audit_log(fleet.dealer_a) == [
        ("tech@a", "claim.failed", box), ("tech@a", "claim", box), ("tech@a", "config", box),
        ("tech@a", "config.rotate-key", box),
        ("tech@a", "claim.unclaim", box), ("tech@a", "claim", box), ("manager@a", "claim.revoke", box)]
    assert fleet.audit_log(fleet.dealer_b) == []
    with fleet.cloud.store.engine.connect() as c:
        details = " ".join(e["detail"] or "" for e in cloud_audit.entries(c, fleet.dealer_a))
    assert fleet.code not in details and "WRONG" not in details and "s3cr3t" not in details
