"""docs/vectors/provisioning.json: the cloud's seal reproduces the configuration answer byte for
byte, the box opens and accepts it, and the claim-code hash matches both the factory's and the
cloud's implementation."""
import base64
import hashlib
import json
import os

import pytest

from cloud import downlink as cloud_downlink
from cloud import envelope as cloud_envelope
from fleetbox import downlink
from cloud.provision import code_hash as cloud_hash
from fbtool.factory import code_hash as factory_hash
from fleetbox import provision

VECTORS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "docs", "vectors", "provisioning.json")


def vectors():
    with open(VECTORS) as f:
        return json.load(f)


def test_claim_code_hash():
    v = vectors()["claim_code"]
    salt = bytes.fromhex(v["salt"])
    want = hashlib.pbkdf2_hmac("sha256", v["normalized"].encode(), salt + v["serial"].encode(), v["iterations"]).hex()
    assert want == v["hash"] == cloud_hash(v["serial"], v["code"], salt) == factory_hash(v["serial"], v["code"], salt)
    assert cloud_hash(v["serial"], v["code"].lower().replace("-", " "), salt) == v["hash"]


def test_config_answer_seals_and_opens(tmp_path):
    v = vectors()["config_answer"]
    plain = cloud_downlink.encode(v["fields"])
    assert plain.hex() == v["plaintext_cbor"]
    env = cloud_envelope.seal(bytes.fromhex(v["key"]), v["kid"], v["device_id"], v["seq"], v["ts"], plain,
                              content_type=v["content_type"], iv=bytes.fromhex(v["iv"]), direction="down")
    assert env.hex() == v["envelope"]
    box = provision.Provisioner.__new__(provision.Provisioner)
    box.serial, box.dir, box.cfg = v["device_id"], str(tmp_path), None
    box.keys = {"kid": v["kid"], "key": v["key"]}
    box.state = {"version": 0}
    box.down = downlink.DownState(str(tmp_path / "downlink.seq"))
    box.endpoints = [{"name": "liberty", "url": "https://liberty.example/v1/provision"}]
    box.factory_ca, box.factory_pins = b"\x30\x03\x02\x01\x00", [bytes(32)]
    answer = json.dumps({"kid": v["kid"], "answer": base64.b64encode(bytes.fromhex(v["envelope"])).decode()})
    assert box._answer(200, answer.encode()) == "updated"
    assert box.state["version"] == 7 and box.down.last == v["seq"]
    with pytest.raises(provision.ProvisionError) as e:          # the same answer again: a replay
        box._answer(200, answer.encode())
    assert "replay" in str(e.value)
    assert box.cfg["snmp_v3"][0]["user"] == "mps"
