"""Writes docs/vectors/update/ (format: docs/update-image.md). Run it only to change the
vectors: `.venv/bin/python tests/host/update_vectors.py` (keys are kept when present;
RSA-PSS signatures are salted, so their bytes change on every run while still verifying).
"""
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "host-tools"))

from fbtool import keys, signing, updimage  # noqa: E402

OUT = os.path.join(ROOT, "docs", "vectors", "update")
CREATED = 1796000000          # 2026-11-29
EXPIRES = 4102444800          # 2100-01-01: the vectors stay valid
CONTENT_KEY = bytes(range(0x20, 0x40))
IV = bytes(range(0xA0, 0xB0))
IDENTITY = {"serial": "FBX-VECTOR-1", "kid": 1, "device_key": bytes(range(32)).hex()}
OTHER_BOX = {"serial": "FBX-VECTOR-2", "kid": 1, "device_key": bytes(range(1, 33)).hex()}
KEYS = (("k1", 3072), ("k2", 3072), ("k3", 4096), ("k4", 3072))


def payload():
    """5000 bytes: a raw payload (not a .fbi) so the vector stays small and fixed."""
    return bytes((i * 7 + (i >> 8)) & 0xFF for i in range(5000))


def app_payload(version="1.3.0"):
    """A small format-1 firmware image (docs/firmware-image.md): files that cross chunk
    boundaries, for the box's streaming installer (fleetbox.updater)."""
    import struct
    files = [("fleetbox/alpha.mpy", bytes((i * 13) & 0xFF for i in range(2500))),
             ("fleetbox/beta.mpy", bytes((i * 29 + 1) & 0xFF for i in range(1800))),
             ("board.mpy", b"B" * 333),
             ("hal.mpy", bytes((i ^ 0x5A) & 0xFF for i in range(1200)))]
    manifest = {"format": 1, "kind": "app", "board": "sim", "version": version, "created": CREATED,
                "files": [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in files]}
    mbytes = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    body = struct.pack("<4sHHI", b"FBIM", 1, 0, len(mbytes)) + mbytes + b"".join(d for _, d in files)
    return body + hashlib.sha256(body).digest()


def app_vectors(k2, k3):
    """app.fbu (a .fbi payload, chunks of 1024) and its wrap for FBX-VECTOR-1 and FBX-VECTOR-2."""
    image, key = updimage.sign(app_payload(), [k2, k3], security_counter=3, min_loader=1, expires=EXPIRES,
                               chunk_size=1024, created=CREATED)
    img = updimage.Image(image)
    _write("app.fbu", image)
    for box, name in ((IDENTITY, "app.fbw"), (OTHER_BOX, "app-other-box.fbw")):
        _write(name, updimage.make_wrap(img, key, box["serial"], box["kid"], bytes.fromhex(box["device_key"])))


PACK_KEY = bytes(range(0x40, 0x60))
PACK_IV = bytes(range(0xB0, 0xC0))


def pack_vectors(k2, k3):
    """pack.fbu: docs/vectors/profiles/example.yaml as a pack (version 7, counter 2, chunks of
    1024), its wrap for FBX-VECTOR-1 and pack.json: what a box installs and checks."""
    from fbtool import pack
    fbi, _ = pack.build("7", os.path.join(ROOT, "docs", "vectors", "profiles"), created=CREATED)
    image, _ = updimage.sign(fbi, [k2, k3], security_counter=2, min_loader=1, expires=EXPIRES, chunk_size=1024,
                             content_key=PACK_KEY, iv=PACK_IV, created=CREATED)
    img = updimage.Image(image)
    _write("pack.fbu", image)
    _write("pack.fbw", updimage.make_wrap(img, PACK_KEY, IDENTITY["serial"], IDENTITY["kid"],
                                          bytes.fromhex(IDENTITY["device_key"])))
    m = int.from_bytes(fbi[8:12], "little")
    with open(os.path.join(ROOT, "docs", "vectors", "profiles-example.json"), "rb") as f:
        profiles = f.read()
    expected = {"content_key": PACK_KEY.hex(), "iv": PACK_IV.hex(), "image_digest": img.digest.hex(),
                "head_size": img.head_size, "manifest": img.manifest, "payload_sha256": hashlib.sha256(fbi).hexdigest(),
                "payload_manifest": json.loads(fbi[12:12 + m]), "payload_tail": fbi[-32:].hex(),
                "profiles_json_sha256": hashlib.sha256(profiles).hexdigest(),
                "chunk_sha256": [h.hex() for h in img.table]}
    assert fbi[12 + m:-32] == profiles
    _write("pack.json", (json.dumps(expected, indent=1, sort_keys=True) + "\n").encode())


def _key(name, bits):
    path = os.path.join(OUT, name + ".pem")
    if not os.path.exists(path):
        keys.generate(path, bits)
    return keys.load_private(path)


def _write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def _pss(k1, k3):
    """A message with signatures: salt 32 (valid), salt 20 (valid PSS, refused by the box's
    fixed salt length), and one by the 4096-bit key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    msg = b"fleetbox RSASSA-PSS test vector"
    salt20 = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=20)
    return {"message": msg.hex(),
            "k1_spki": keys.spki_der(k1.public_key()).hex(),
            "k3_spki": keys.spki_der(k3.public_key()).hex(),
            "k1_sig": keys.sign(k1, msg).hex(),
            "k1_sig_salt20": k1.sign(msg, salt20, hashes.SHA256()).hex(),
            "k3_sig": keys.sign(k3, msg).hex()}


def main():
    os.makedirs(OUT, exist_ok=True)
    k1, k2, k3, k4 = (_key(n, b) for n, b in KEYS)
    pub = lambda ks: [k.public_key() for k in ks]  # noqa: E731
    root1 = signing.signed_root(signing.root_body(1, pub((k1, k2, k3)), 2, pub((k1, k2, k3)), 2,
                                                  EXPIRES, CREATED), [k1, k2])
    old = signing.verify_root(root1)
    # rotation: k1 is revoked, k4 joins; signed by 2 old (k2, k3) and 2 new (k2, k3) keys
    root2 = signing.rotate(old, pub((k2, k3, k4)), 2, pub((k2, k3, k4)), 2, EXPIRES, [k2, k3], CREATED)
    image, _ = updimage.sign(payload(), [k2, k3], security_counter=3, min_loader=1, expires=EXPIRES,
                             board="sim", version="1.2.0", kind="app", chunk_size=1024,
                             content_key=CONTENT_KEY, iv=IV, created=CREATED)
    img = updimage.Image(image)
    old_image, _ = updimage.sign(payload(), [k1, k2], security_counter=3, min_loader=1, expires=EXPIRES,
                                 board="sim", version="1.2.0", kind="app", chunk_size=1024,
                                 content_key=CONTENT_KEY, iv=IV, created=CREATED)
    wrap = updimage.make_wrap(img, CONTENT_KEY, IDENTITY["serial"], IDENTITY["kid"],
                              bytes.fromhex(IDENTITY["device_key"]))
    _write("root-1.fbr", root1)
    _write("root-2.fbr", root2)
    _write("image.fbu", image)
    _write("image-k1k2.fbu", old_image)
    _write("payload.bin", payload())
    _write("FBX-VECTOR-1.fbw", wrap)
    kek = updimage.kek(bytes.fromhex(IDENTITY["device_key"]), IDENTITY["serial"])
    expected = {
        "identity": IDENTITY,
        "other_box": OTHER_BOX,
        "content_key": CONTENT_KEY.hex(),
        "iv": IV.hex(),
        "kek": kek.hex(),
        "wrapped": json.loads(wrap)["wrapped"],
        "key_check": updimage.key_check(CONTENT_KEY).hex(),
        "image_digest": img.digest.hex(),
        "head_size": img.head_size,
        "chunk_sha256": [h.hex() for h in img.table],
        "payload_sha256": hashlib.sha256(payload()).hexdigest(),
        "key_ids": {n: keys.key_id(k.public_key()).hex() for (n, _), k in zip(KEYS, (k1, k2, k3, k4))},
        "root_1_digest": hashlib.sha256(root1[:12 + int.from_bytes(root1[8:12], "little")]).hexdigest(),
        "pss": _pss(k1, k3),
        "created": CREATED,
        "expires": EXPIRES,
    }
    app_vectors(k2, k3)
    pack_vectors(k2, k3)
    _write("expected.json", (json.dumps(expected, indent=1, sort_keys=True) + "\n").encode())
    print("wrote", OUT)


if __name__ == "__main__":
    if sys.argv[1:] == ["app"]:      # only the installer's vectors
        app_vectors(_key("k2", 3072), _key("k3", 4096))
    elif sys.argv[1:] == ["pack"]:   # only the pack's
        pack_vectors(_key("k2", 3072), _key("k3", 4096))
    else:
        main()
