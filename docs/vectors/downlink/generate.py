"""Writes docs/vectors/downlink/vectors.json from cloud/downlink.py and cloud/envelope.py.

    .venv/bin/python docs/vectors/downlink/generate.py

Each vector is a sealed answer and what a box must make of it, given its state (the last down
seq it accepted). The firmware's tests open every one with firmware/fleetbox/downlink.py, an
implementation that shares no code with the cloud's.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
import cbor2  # noqa: E402

from cloud import envelope  # noqa: E402

KEY = bytes(range(0x20, 0x40))
KID = 2
DEVICE = "FBX-000001"
TS = 1767232801


def vector(name, seq, fields, last=0, expect=None, error=None, ts=TS, ctype=2, device=DEVICE, kid=KID,
           direction=envelope.DOWN, tamper=None, plaintext=None):
    iv = bytes((0xE0 + (seq & 0x0F),)) + bytes(range(0xE1, 0xF0))
    pt = cbor2.dumps(fields, canonical=True) if plaintext is None else plaintext
    body = envelope.seal(KEY, kid, device, seq, ts, pt, ctype, iv, direction)
    if tamper is not None:
        body = bytearray(body)
        body[tamper] ^= 0x01
        body = bytes(body)
    v = {"name": name, "last_accepted_seq": last, "seq": seq, "ts": ts, "kid": kid, "device_id": device,
         "content_type": ctype, "direction": direction, "iv": iv.hex(), "plaintext": pt.hex(),
         "answer": body.hex()}
    if error:
        v["error"] = error
    else:
        v["fields"] = expect if expect is not None else fields
    return v


def main():
    ack = {"ok": True, "upload": 17, "time": TS}
    vectors = [
        vector("ack", 1, ack),
        vector("ack-duplicate-resync", 2, {"ok": True, "upload": 17, "duplicate": True, "resync": [3, 4],
                                          "time": TS}, last=1),
        vector("refusal-replay", 7, {"ok": False, "reason": "replay", "last_seq": 4096, "time": TS}, last=6),
        vector("refusal-out-of-window", 8, {"ok": False, "reason": "out-of-window", "time": TS}, last=0),
        vector("unknown-field-ignored", 9, {"ok": True, "upload": 1, "x-later": {"a": [1, 2]}},
               expect={"ok": True, "upload": 1}),
        vector("empty-map", 10, {}),
        vector("replay-equal", 5, ack, last=5, error="replay"),
        vector("replay-older", 4, ack, last=5, error="replay"),
        vector("forged-tag", 11, ack, tamper=-1, error="bad-mac"),
        vector("forged-ciphertext", 12, ack, tamper=-40, error="bad-mac"),
        vector("up-direction", 13, ack, direction=envelope.UP, error="bad-mac"),
        vector("other-device", 14, ack, device="FBX-000002", error="device"),
        vector("other-kid", 15, ack, kid=3, error="kid"),
        vector("content-type-240", 16, ack, ctype=240, error="content-type"),
        vector("resync-text", 17, {"ok": True, "upload": 1, "resync": "abc"}, error="field"),
        vector("last-seq-2^64-1", 18, {"ok": False, "reason": "replay", "last_seq": 2 ** 64 - 1}, error="field"),
        vector("time-negative", 19, {"ok": True, "time": -1}, error="field"),
        vector("time-before-2020", 20, {"ok": True, "time": 1000}, error="field"),
        vector("ok-as-int", 21, {"ok": 1}, error="field"),
        vector("not-a-map", 22, [1, 2], error="not-a-map"),
        vector("cbor-tag", 23, None, plaintext=bytes.fromhex("c11a6955d521"), error="cbor"),
        vector("cbor-trailing", 24, None, plaintext=bytes.fromhex("a0a0"), error="cbor"),
        vector("cbor-too-deep", 25, None, plaintext=bytes.fromhex("a1616b" + "81" * 7 + "00"), error="cbor"),
    ]
    out = {"key": KEY.hex(), "kid": KID, "device_id": DEVICE, "vectors": vectors}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
