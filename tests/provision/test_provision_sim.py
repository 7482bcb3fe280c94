"""Zero-touch provisioning end to end: a factory-fresh sim board (identity only) against the
simulated cloud; the dealer claims it with fbtool cloud; the box provisions itself, uploads,
takes configuration changes, refuses a bad one, survives a factory reset, stops when revoked.

One simulation, steps in order (each test builds on the previous one's state).
"""
import json
import os
import subprocess
import time

import pytest

from simulator.runner import SimError, Simulation, _tool

SNMP_PORT = 17261
CLOUD_PORT = 17543
WEB_PORTS = {80: 17280, 443: 17544}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = Simulation(str(tmp_path_factory.mktemp("prov")), snmp_port=SNMP_PORT, cloud_port=CLOUD_PORT, interval=8,
                   liberty="127.77.50.1", rescue="127.77.50.2", echo=lambda s: None, web_ports=WEB_PORTS,
                   fresh=True)
    try:
        s.start(claim=False)
        yield s
    finally:
        s.stop()


def _view(sim):
    return sim.provisioning() or {}


def _dealer_fails(sim, *args, env=None, token_file=None):
    with pytest.raises(SimError) as e:
        sim.dealer(*args, env=env, token_file=token_file)
    return str(e.value)


def test_the_factory_files_are_private_and_hold_no_shared_secret(sim):
    for path in (sim.identity_path, sim.factory_manifest, sim.label):
        assert os.stat(path).st_mode & 0o077 == 0, path
    manifest = json.load(open(sim.factory_manifest))["boxes"][sim.serial]
    code = open(sim.label).read().split("claim code ")[1].strip()
    assert code.replace("-", "") not in json.dumps(manifest)
    assert "key" not in manifest and set(manifest) == {"cert", "spki", "claim_salt", "claim_hash"}


def test_an_unclaimed_box_waits_with_backoff_and_shows_it(sim):
    sim.wait_for("two provisioning requests", lambda: sum(
        1 for line in sim.box_log if "provisioning: not claimed yet" in line) >= 2, 60)
    assert sim.led() == "unprovisioned"
    assert sim.hw.running() and sim.hw.exit is None
    assert _view(sim)["state"] == "unclaimed"
    assert sim.cycles() == [] and sim.cloud.store.boxes() == []
    waits = [int(line.rsplit("again in ", 1)[1].split()[0]) for line in sim.box_log if "asking again in" in line]
    assert waits[:2] == [5, 10]         # doubling, from docs/provisioning.md


def _mallory(sim):
    """Another dealer's technician with a site of its own: its API token's file."""
    from cloud import accounts, tenancy
    with sim.cloud.store.engine.begin() as c:
        dealer = tenancy.add_dealer(c, "Mallory")
        site = tenancy.add_site(c, tenancy.add_customer(c, dealer, "M"), "M HQ")
        token = accounts.issue(c, accounts.add_user(c, dealer, "m@mallory.example", "password-for-tests",
                                                    "technician"), "token")
    path = os.path.join(sim.state, "mallory.token")
    with open(path, "w") as f:
        f.write(token)
    return path, site


def test_a_wrong_claim_code_is_refused_and_rate_limited(sim):
    token, site = _mallory(sim)
    for _ in range(5):
        out = _dealer_fails(sim, "claim", sim.serial, "--site", str(site), env={"FLEETBOX_CLAIM_CODE": "WRONG"},
                            token_file=token)
        assert "403" in out and "wrong-code" in out
    code = open(sim.label).read().split("claim code ")[1].strip()
    out = _dealer_fails(sim, "claim", sim.serial, "--site", str(site), env={"FLEETBOX_CLAIM_CODE": code},
                        token_file=token)
    assert "429" in out                 # even the right code, once this dealer guessed too often
    assert _view(sim)["state"] == "unclaimed"
    assert code not in out


def test_claimed_the_box_provisions_itself_and_uploads(sim):
    t0 = time.time()
    sim.claim()
    sim.inject("button")                # the installer may press it; the box would also ask on its own
    sim.wait_cycles(1, 120)
    # the box reports the version it runs at its next contact (config_check_s)
    sim.wait_for("configuration 1 reported", lambda: _view(sim)["running_version"] == 1, 60)
    v = _view(sim)
    assert v["state"] == "claimed" and v["customer"] == "Sim Customer"
    assert "env_key" not in v and "claim_hash" not in v
    assert sim.led() == "running"
    assert any("configuration 1 in force" in line for line in sim.box_log)
    assert time.time() - t0 < 120


def test_the_secrets_never_reach_the_log(sim):
    key = sim.cloud.provisioning.keys  # noqa: F841  (the lookup exists; the key itself is in the db)
    with sim.cloud.store.engine.connect() as c:
        from cloud.provision_schema import provisioned
        env_key = c.execute(provisioned.select()).mappings().first()["env_key"]
    identity = json.load(open(sim.identity_path))
    text = "\n".join(sim.box_log)
    assert env_key not in text and identity["key"] not in text


def test_a_configuration_change_is_picked_up_and_reported(sim):
    cfg = sim.box_config()
    cfg["intervals"] = {"full": 9}
    sim.push_config(cfg)
    sim.wait_for("configuration 2 in force", lambda: _view(sim)["running_version"] == 2, 60)
    assert any("configuration 2 in force" in line for line in sim.box_log)


def test_a_bad_configuration_is_refused_with_its_reason_and_the_old_one_stays(sim):
    cfg = sim.box_config()
    cfg["pins"] = ["00" * 31]           # 31 bytes: not a SHA-256 pin
    sim.push_config(cfg)
    sim.wait_for("the refusal reported", lambda: _view(sim)["refused_version"] == 3, 60)
    v = _view(sim)
    assert v["running_version"] == 2 and "32 bytes" in v["refused_reason"]
    n = len(sim.cycles())
    sim.wait_cycles(n + 1, 60)          # still collecting and uploading with configuration 2


def test_a_factory_reset_wipes_and_the_box_provisions_again(sim):
    kid = _view(sim)["kid"]
    sim.push_config(sim.box_config())   # version 4: the good one again
    sim.inject("button 10500")
    sim.wait_for("a new envelope key", lambda: _view(sim)["kid"] == kid + 1, 90)
    sim.wait_for("configuration 4 after the reset", lambda: _view(sim)["running_version"] == 4, 90)
    assert any("factory reset" in line for line in sim.box_log)
    n = len(sim.cycles())
    sim.wait_cycles(n + 1, 90)          # uploads again, under the new key
    assert sim.led() == "running"


def test_revoked_the_box_stops_and_shows_it(sim):
    sim.dealer("revoke", sim.serial)
    sim.wait_for("the revoked LED", lambda: sim.led() == "revoked", 60)
    n = len(sim.cloud.store.uploads(sim.serial))
    time.sleep(12)
    assert len(sim.cloud.store.uploads(sim.serial)) == n
    assert sim.hw.running()


def test_fbtool_cloud_takes_the_token_from_a_file_or_the_environment_not_argv(sim):
    r = subprocess.run([_tool("fbtool"), "cloud", "status", sim.serial, "--url", "https://127.77.50.1:%d" % CLOUD_PORT,
                        "--ca", os.path.join(sim.state, "ca.pem")], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, env=dict(os.environ, FLEETBOX_TOKEN=""))
    assert r.returncode != 0 and "API token" in r.stderr
    token = open(sim.dealer_token).read()
    out = sim.dealer("status", sim.serial)
    assert token not in out and "env_key" not in out and json.loads(out)[0]["state"] == "revoked"
