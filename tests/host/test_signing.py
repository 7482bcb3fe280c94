"""fbtool keygen / root / image end to end (subprocess), each refusal with its reason,
and docs/vectors/update/ checked by the host tool as well as by the box's verifier."""
import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest

from fbtool import keys, signing, updimage

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VECTORS = os.path.join(ROOT, "docs", "vectors", "update")
FBTOOL = os.path.join(os.path.dirname(sys.executable), "fbtool")
FAR = "4102444800"     # 2100-01-01


def fb(*args, ok=True):
    r = subprocess.run([FBTOOL] + [str(a) for a in args], capture_output=True, text=True, timeout=300)
    if ok:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def refused(reason, *args):
    r = fb(*args, ok=False)
    assert r.returncode == 3 and r.stderr.strip().endswith("[%s]" % reason), r.stdout + r.stderr
    return r.stderr


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Four keys, root v1 (2-of-3: k1 k2 k3), root v2 (k1 revoked, k4 in), a built .fbi,
    an image signed by k2 k3, its content key, two box identities and a wrap for box 1."""
    d = tmp_path_factory.mktemp("signing")
    p = {n: d / n for n in ("k1.pem", "k2.pem", "k3.pem", "k4.pem", "root1.fbr", "root2.fbr", "fw.fbi",
                            "fw.fbu", "id1.json", "id2.json", "mfg.json", "box1.fbw")}
    for n, bits in (("k1.pem", 3072), ("k2.pem", 3072), ("k3.pem", 4096), ("k4.pem", 3072)):
        fb("keygen", "-o", p[n], "--bits", bits)
    fb("root", "init", "-o", p["root1.fbr"], "--key", p["k1.pem"], "--key", p["k2.pem"], "--key", p["k3.pem"],
       "--threshold", 2, "--sign", p["k1.pem"], "--sign", p["k2.pem"], "--expires", FAR)
    fb("root", "rotate", "--trusted", p["root1.fbr"], "-o", p["root2.fbr"], "--key", p["k2.pem"],
       "--key", p["k3.pem"], "--key", p["k4.pem"], "--threshold", 2, "--sign", p["k2.pem"], "--sign", p["k3.pem"],
       "--expires", FAR)
    fb("build", "-o", p["fw.fbi"])
    fb("image", "sign", p["fw.fbi"], "-o", p["fw.fbu"], "--sign", p["k2.pem"], "--sign", p["k3.pem"],
       "--security-counter", 5, "--min-loader", 2, "--expires", FAR, "--root", p["root1.fbr"])
    fb("identity", "FB-0001", "-o", p["id1.json"], "--manifest", p["mfg.json"])
    fb("identity", "FB-0002", "-o", p["id2.json"], "--manifest", p["mfg.json"])
    fb("image", "wrap", p["fw.fbu"], "--content-key", str(p["fw.fbu"]) + ".key", "--identity", p["id1.json"],
       "-o", p["box1.fbw"])
    return p


def test_keygen_writes_private_0600_and_public_with_its_id(kit, tmp_path):
    mode = stat.S_IMODE(os.stat(kit["k1.pem"]).st_mode)
    assert mode == 0o600
    pub = keys.load_public(str(kit["k1.pem"])[:-4] + ".pub.pem")
    assert keys.load_private(str(kit["k1.pem"])).public_key().public_numbers() == pub.public_numbers()
    assert pub.key_size == 3072 and pub.public_numbers().e == 65537
    assert keys.load_public(kit["k3.pem"]).key_size == 4096
    r = fb("keygen", "-o", tmp_path / "new.pem")
    kid = hashlib.sha256(keys.spki_der(keys.load_public(tmp_path / "new.pem"))).hexdigest()
    assert kid in r.stdout
    refused("invalid", "keygen", "-o", tmp_path / "new.pem")            # never overwrites a key


def test_root_init_verify_and_threshold(kit, tmp_path):
    r = fb("root", "verify", kit["root1.fbr"])
    assert "version 1" in r.stdout and "root 2-of-3, image 2-of-3" in r.stdout
    refused("threshold", "root", "init", "-o", tmp_path / "r.fbr", "--key", kit["k1.pem"], "--key",
            kit["k2.pem"], "--threshold", 2, "--sign", kit["k1.pem"])
    assert not (tmp_path / "r.fbr").exists()
    refused("expired", "root", "verify", kit["root1.fbr"], "--min-time", int(FAR) + 1)


def test_rotation_needs_old_and_new_thresholds(kit, tmp_path):
    r = fb("root", "verify", kit["root1.fbr"], kit["root2.fbr"])
    assert "version 2 verified (2 files)" in r.stdout
    k1 = keys.key_id(keys.load_public(kit["k1.pem"])).hex()
    assert k1 not in r.stdout                                           # revoked
    new = ["--key", kit["k2.pem"], "--key", kit["k3.pem"], "--key", kit["k4.pem"], "--threshold", 2]
    # only one old key (k1 is not in the new set; k4 is not an old key)
    refused("threshold", "root", "rotate", "--trusted", kit["root1.fbr"], "-o", tmp_path / "x.fbr", *new,
            "--sign", kit["k1.pem"], "--sign", kit["k4.pem"])
    # two old keys but only one new one
    refused("threshold", "root", "rotate", "--trusted", kit["root1.fbr"], "-o", tmp_path / "x.fbr", *new,
            "--sign", kit["k1.pem"], "--sign", kit["k2.pem"])
    # a root v2 cannot be presented as the successor of itself, nor v1 after v2
    refused("root_version", "root", "verify", kit["root1.fbr"], kit["root2.fbr"], kit["root2.fbr"])
    refused("threshold", "root", "verify", kit["root2.fbr"], kit["root1.fbr"])
    assert not (tmp_path / "x.fbr").exists()


def test_info_dumps_every_field(kit):
    out = fb("image", "info", kit["fw.fbu"], "--root", kit["root1.fbr"]).stdout
    img = updimage.Image(open(kit["fw.fbu"], "rb").read())
    for name, value in img.manifest.items():
        if name == "key_wrap":
            for k, v in value.items():
                assert "key_wrap.%s: %s" % (k, v) in out
        else:
            assert "%s: %s" % (name, value) in out
    for i, h in enumerate(img.table):
        assert "chunk %d: offset %d sha256 %s" % (i, img.head_size + i * img.manifest["chunk_size"], h.hex()) in out
    assert out.count("— valid") == 2 and img.digest.hex() in out
    assert img.manifest["board"] == "sim" and img.manifest["payload_format"] == "fbi1"
    assert img.manifest["security_counter"] == 5 and img.manifest["min_loader"] == 2


def test_verify_decrypts_with_key_wrap_or_manifest(kit):
    img = ["image", "verify", kit["fw.fbu"], "--root", kit["root1.fbr"], "--board", "sim"]
    r = fb(*img, "--content-key", str(kit["fw.fbu"]) + ".key")
    assert "payload decrypted" in r.stdout and "fbi1" in r.stdout
    r = fb(*img, "--wrap", kit["box1.fbw"], "--identity", kit["id1.json"])
    assert "payload decrypted" in r.stdout
    assert "not decrypted" in fb(*img).stdout
    # the cloud's copy of the box key (manufacturing manifest) makes the same wrap
    fb("image", "wrap", kit["fw.fbu"], "--content-key", str(kit["fw.fbu"]) + ".key", "--manifest",
       kit["mfg.json"], "--serial", "FB-0001", "-o", str(kit["box1.fbw"]) + ".2")
    fb(*img, "--wrap", str(kit["box1.fbw"]) + ".2", "--manifest", kit["mfg.json"], "--serial", "FB-0001")
    # through the rotation too (signed by k2 k3, both kept)
    fb("image", "verify", kit["fw.fbu"], "--root", kit["root1.fbr"], "--root", kit["root2.fbr"])
    assert stat.S_IMODE(os.stat(str(kit["fw.fbu"]) + ".key").st_mode) == 0o600


def _variant(kit, tmp_path, name, mutate):
    data = bytearray(open(kit["fw.fbu"], "rb").read())
    data = mutate(data)
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


def test_every_refusal(kit, tmp_path):
    v = ["--root", kit["root1.fbr"]]
    refused("wrong_board", "image", "verify", kit["fw.fbu"], *v, "--board", "esp32-poe")
    refused("older_version", "image", "verify", kit["fw.fbu"], *v, "--current-version", "0.2.0")
    refused("security_counter", "image", "verify", kit["fw.fbu"], *v, "--security-counter", 6)
    refused("expired", "image", "verify", kit["fw.fbu"], *v, "--min-time", int(FAR) + 1)
    refused("loader_too_old", "image", "verify", kit["fw.fbu"], *v, "--loader-version", 1)
    refused("too_big", "image", "verify", kit["fw.fbu"], *v, "--slot-size", 1000)
    refused("wrong_box", "image", "verify", kit["fw.fbu"], *v, "--wrap", kit["box1.fbw"], "--identity", kit["id2.json"])
    # unknown keys: a root of other keys; threshold: one signature of two
    fb("root", "init", "-o", tmp_path / "other.fbr", "--key", kit["k4.pem"], "--threshold", 1, "--expires", FAR)
    refused("unknown_key", "image", "verify", kit["fw.fbu"], "--root", tmp_path / "other.fbr")
    fb("image", "sign", kit["fw.fbi"], "-o", tmp_path / "one.fbu", "--sign", kit["k2.pem"], "--security-counter", 5)
    refused("threshold", "image", "verify", tmp_path / "one.fbu", *v)
    # revoked: signed by k1 + k2, fine under root 1, refused under the rotated root
    fb("image", "sign", kit["fw.fbi"], "-o", tmp_path / "k1k2.fbu", "--sign", kit["k1.pem"], "--sign",
       kit["k2.pem"], "--security-counter", 5)
    fb("image", "verify", tmp_path / "k1k2.fbu", *v)
    refused("threshold", "image", "verify", tmp_path / "k1k2.fbu", *v, "--root", kit["root2.fbr"])
    img = updimage.Image(open(kit["fw.fbu"], "rb").read())
    refused("truncated", "image", "verify", _variant(kit, tmp_path, "cut.fbu", lambda d: d[:-100]), *v)
    refused("truncated", "image", "verify", _variant(kit, tmp_path, "cut2.fbu", lambda d: d[:300]), *v)

    def flip(d, pos):
        d[pos] ^= 0x04
        return d
    refused("bad_chunk", "image", "verify",
            _variant(kit, tmp_path, "flip.fbu", lambda d: flip(d, img.head_size + 5000)), *v)
    refused("bad_signature", "image", "verify", _variant(kit, tmp_path, "man.fbu", lambda d: flip(d, 30)), *v)
    refused("bad_format", "image", "verify", kit["root1.fbr"], *v)


def test_wrong_content_key_is_refused(kit, tmp_path):
    (tmp_path / "zero.key").write_text("00" * 32)
    refused("wrong_key", "image", "verify", kit["fw.fbu"], "--root", kit["root1.fbr"], "--content-key",
            tmp_path / "zero.key")
    refused("wrong_key", "image", "wrap", kit["fw.fbu"], "--content-key", tmp_path / "zero.key",
            "--identity", kit["id1.json"], "-o", tmp_path / "w.fbw")


def test_raw_payload_needs_board_version_kind(kit, tmp_path):
    (tmp_path / "pack.bin").write_bytes(b"profiles" * 1000)
    refused("invalid", "image", "sign", tmp_path / "pack.bin", "-o", tmp_path / "p.fbu", "--sign", kit["k2.pem"],
            "--security-counter", 1)
    fb("image", "sign", tmp_path / "pack.bin", "-o", tmp_path / "p.fbu", "--sign", kit["k2.pem"], "--sign",
       kit["k3.pem"], "--security-counter", 1, "--board", "sim", "--version", "2026.11.1", "--kind", "pack")
    r = fb("image", "verify", tmp_path / "p.fbu", "--root", kit["root1.fbr"], "--content-key",
           str(tmp_path / "p.fbu") + ".key")
    assert "pack 2026.11.1" in r.stdout and "raw" in r.stdout


def test_vectors_on_the_host():
    e = json.load(open(os.path.join(VECTORS, "expected.json")))
    data = open(os.path.join(VECTORS, "image.fbu"), "rb").read()
    r1 = open(os.path.join(VECTORS, "root-1.fbr"), "rb").read()
    r2 = open(os.path.join(VECTORS, "root-2.fbr"), "rb").read()
    root = signing.verify_chain(r1, [r2], e["created"])
    img, payload = updimage.verify(data, root, board="sim", min_time=e["created"], identity=e["identity"],
                                   wrap=open(os.path.join(VECTORS, "FBX-VECTOR-1.fbw"), "rb").read())
    assert payload == open(os.path.join(VECTORS, "payload.bin"), "rb").read()
    assert img.digest.hex() == e["image_digest"] and img.head_size == e["head_size"]
    assert [h.hex() for h in img.table] == e["chunk_sha256"]
    assert hashlib.sha256(payload).hexdigest() == e["payload_sha256"]
    assert updimage.kek(bytes.fromhex(e["identity"]["device_key"]), e["identity"]["serial"]).hex() == e["kek"]
    assert updimage.key_check(bytes.fromhex(e["content_key"])).hex() == e["key_check"]
    assert img.manifest["iv"] == e["iv"]
    assert signing.Root(r1).digest.hex() == e["root_1_digest"]
    for name, kid in e["key_ids"].items():
        assert keys.key_id(keys.load_public(os.path.join(VECTORS, name + ".pub.pem"))).hex() == kid
    # the content key decrypts the ciphertext as CBC chained from the manifest's IV
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    d = Cipher(algorithms.AES(bytes.fromhex(e["content_key"])), modes.CBC(bytes.fromhex(e["iv"]))).decryptor()
    assert (d.update(img.ciphertext) + d.finalize())[:len(payload)] == payload
    with pytest.raises(signing.SigningError) as err:
        updimage.verify(open(os.path.join(VECTORS, "image-k1k2.fbu"), "rb").read(), root)
    assert err.value.reason == "threshold"


def test_passphrase_protected_key(tmp_path):
    env = dict(os.environ, FBTOOL_KEY_PASSPHRASE="correct horse")
    r = subprocess.run([FBTOOL, "keygen", "-o", str(tmp_path / "p.pem")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "p.pem").read_bytes()
    args = [FBTOOL, "root", "init", "-o", str(tmp_path / "r.fbr"), "--key", str(tmp_path / "p.pem"), "--threshold", "1"]
    r = subprocess.run(args, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    env.pop("FBTOOL_KEY_PASSPHRASE")
    r = subprocess.run(args, env=env, capture_output=True, text=True)
    assert r.returncode == 3 and "not a usable private key" in r.stderr


def test_malformed_signed_root_is_bad_format(kit, tmp_path):
    k = keys.load_private(kit["k1.pem"])
    body = signing.root_body(1, [k.public_key()], 1, [k.public_key()], 1, int(FAR), 1)
    del body["roles"]["image"]
    (tmp_path / "bad.fbr").write_bytes(signing.signed_root(body, [k]))
    refused("bad_format", "root", "verify", tmp_path / "bad.fbr")
