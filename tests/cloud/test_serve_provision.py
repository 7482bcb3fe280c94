"""`fleetbox-cloud serve` provisions on its own (factory_manifest + a listener with the factory CA
as client_ca): a factory-fresh box hears "unclaimed", a dealer's technician claims it over HTTPS
with an API token into its site, and the box then gets its key."""
import asyncio
import http.client
import json
import os
import ssl

import pytest

from cloud import accounts, config, tenancy
from cloud.store import Store
from fbtool import factory
from fleetbox import provision
from simulator import pki
from tests.cloud.service import Service

ADDRESS = "127.77.32.1"
SERIAL = "SRV-0001"


@pytest.fixture
def svc(tmp_path):
    d = str(tmp_path)
    fca = factory.ensure_factory_ca(os.path.join(d, "factory"))
    s = Service(d, os.path.join(d, "cloud.sqlite"), endpoints={"liberty": ADDRESS},
                top_toml=['factory_manifest = ["factory-manifest.json", "later.json"]'],
                client_ca={"liberty": "factory/factory-ca.pem"})
    s.fca = fca
    try:
        yield s
    finally:
        s.stop()


def _claim(svc, token, site, code):
    conn = http.client.HTTPSConnection(ADDRESS, svc.port["liberty"], timeout=20,
                                       context=ssl.create_default_context(cadata=svc.ca_der))
    try:
        conn.request("POST", "/v1/claim", json.dumps({"serial": SERIAL, "code": code, "site": site}),
                     {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def test_serve_provisions_boxes_claimed_through_accounts(svc, tmp_path):
    svc.start()
    pin = pki.spki_pin(os.path.join(svc.dir, "liberty.pem"))
    url = "https://liberty.fleetbox.test:%d/v1/provision" % svc.port["liberty"]
    identity, entry, code = factory.make(SERIAL, svc.fca, svc.ca_der, [pin],
                                         [{"name": "liberty", "url": url, "resolve": ADDRESS}])
    factory.add_to_manifest(os.path.join(svc.dir, "factory-manifest.json"), SERIAL, entry)
    os.makedirs(str(tmp_path / "box"))
    box = provision.Provisioner(identity, str(tmp_path / "box"))
    assert asyncio.run(box.check()) == "unclaimed"
    store = Store(svc.database, migrate=False, pool_size=1)
    try:
        with store.engine.begin() as c:
            dealer = tenancy.add_dealer(c, "D", owns_keys=True)
            site = tenancy.add_site(c, tenancy.add_customer(c, dealer, "C"), "S")
            token = accounts.issue(c, accounts.add_user(c, dealer, "t@d.example", "password-for-tests",
                                                        "technician"), "token")
        assert _claim(svc, "fbt_wrong", site, code)[0] == 401
        assert _claim(svc, token, site, code)[0] == 200
        assert asyncio.run(box.check()) == "current" and box.keys["kid"] == 1
        with store.engine.connect() as c:
            assert tenancy.box_places(c, [SERIAL])[SERIAL]["state"] == "provisioned"
    finally:
        store.close()


def test_factory_manifest_needs_a_listener_asking_for_client_certificates(tmp_path):
    path = tmp_path / "cloud.toml"
    path.write_text('database = "db.sqlite"\nmanifest = "m.json"\nfactory_manifest = "f.json"\n'
                    '[[listener]]\nname = "liberty"\ncert = "c.pem"\nkey = "k.pem"\n')
    with pytest.raises(config.ConfigError, match="client_ca"):
        config.load(str(path))
    path.write_text(path.read_text() + 'client_ca = "fca.pem"\n')
    assert config.load(str(path)).factory_manifests == [str(tmp_path / "f.json")]
