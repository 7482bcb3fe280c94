"""SNMPv3 users in the box's configuration: delivered by the cloud, checked on the box, and used by
the collector against an SNMPv3-only printer (snmpsim answering one v3 user, no community)."""
import asyncio

from fleetbox import config, targets
from fleetbox.snmp import Client
from fleetbox.sweep import SweepOptions, sweep
from tests.interop.test_snmp_v3 import snmpsim_v3  # noqa: F401  (the fixture)
from tests.provision.test_provision_cloud import claimed, fleet  # noqa: F401  (the fixture)

USER = {"user": "printer-admin", "auth": "SHA256", "auth_pass": "fleet-auth-key", "priv": "AES256",
        "priv_pass": "fleet-priv-key", "context": "brother"}


def _collect(cfg):
    async def main():
        client = Client(timeout_ms=cfg["timeout_ms"], retries=cfg["retries"])
        found = []
        try:
            await sweep(client, targets.expand(cfg["targets"], cfg["exclude"], cfg["snmp_port"]), found.append,
                        SweepOptions(scan="full", creds=config.credentials(cfg), workers=cfg["workers"]))
        finally:
            client.close()
        return found
    return asyncio.run(main())


def test_the_box_reads_a_v3_only_printer_with_the_user_the_cloud_configured(fleet, snmpsim_v3):  # noqa: F811
    box = claimed(fleet, fleet.box_cfg(targets=["127.0.0.1:%d" % snmpsim_v3], snmp_version="3", snmp_v3=[USER],
                                       timeout_ms=1500))
    cfg = box.cfg
    assert [c.version for c in config.credentials(cfg)] == ["3"]     # no community goes on the wire
    found = _collect(cfg)
    assert len(found) == 1 and found[0]["snmp_version"] == "3" and found[0]["model"] and found[0]["supplies"]
    # the same printer with a wrong passphrase: nothing (the v3 user is what reads it)
    wrong = dict(USER, auth_pass="not-the-key")
    fleet.prov.set_config(fleet.tech, "PRV-0001", fleet.box_cfg(targets=["127.0.0.1:%d" % snmpsim_v3], snmp_version="3",
                                                    snmp_v3=[wrong], timeout_ms=300, retries=0))
    assert asyncio.run(box.check()) == "updated"
    assert _collect(box.cfg) == []


def test_v3_users_are_checked_and_their_secrets_masked():
    from fleetbox import port
    cfg = config.check({"snmp_v3": [USER], "snmp_version": "3"})
    assert cfg["snmp_v3"][0]["user"] == "printer-admin"
    lines = []
    port.set_log_sink(lines.append)
    try:
        port.log("test", port.WARN, "passphrase fleet-priv-key")
    finally:
        port.set_log_sink(None)
    assert "fleet-priv-key" not in "".join(lines)
    for bad, why in (({"snmp_v3": [dict(USER, priv="DES")]}, "DES"), ({"snmp_v3": [dict(USER, extra=1)]}, "unknown"),
                     ({"snmp_v3": [dict(USER, auth_pass="short")]}, "snmp_v3"),
                     ({"snmp_v3": [USER] * 17}, "at most")):
        try:
            config.check(bad)
        except config.ConfigError as e:
            assert why in str(e), (bad, str(e))
        else:
            raise AssertionError(bad)
