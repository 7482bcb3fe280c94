"""Delta encoding of device records: only what changed since the last acknowledged upload.

The box keeps, per device, a 4-byte digest of each top-level field of the record the
cloud last acknowledged (and that upload's id, collected_at and uptime_s). A record
whose device has such a state travels as a delta: its changed fields only, plus
"=": [device key, base upload id]. The cloud merges it onto the full record it keeps
and answers "resync" when its base differs; the box then sends that device in full.
Format: docs/payload.md. The state lives in one JSON file, replaced atomically.
"""
import binascii
import hashlib
import json

from fleetbox import cbor
from fleetbox.spool import atomic_write

MAX_DEVICES = 512           # devices remembered; others are sent in full
_CLOCK = ("collected_at", "uptime_s")


def device_key(rec):
    """A device's identity across readings (the cloud computes the same)."""
    return rec.get("serial") or rec.get("mac") or "%s:%s" % (rec.get("ip"), rec.get("port") or 161)


def field_digest(value):
    h = hashlib.sha256()
    cbor.dump(value, h.update)
    return binascii.hexlify(h.digest()[:4]).decode()


class DeltaState:
    def __init__(self, path):
        self.path = path
        try:
            with open(path) as f:
                self.devices = json.load(f)
        except (OSError, ValueError):
            self.devices = {}   # no state: everything goes in full, which is always safe

    def encode(self, upload_id, batch):
        """(batch to send, state to commit once the cloud acknowledged it)."""
        full = batch.get("scan") == "full"
        cycle = batch.get("cycle")
        out = []
        pending = {}
        for rec in batch["records"]:
            key = device_key(rec)
            old = pending.get(key) or self.devices.get(key)
            digests = {}
            for name, value in rec.items():
                if name not in _CLOCK:
                    digests[name] = field_digest(value)
            if old is None:
                out.append(rec)
                merged = digests
            else:
                out.append(_delta(rec, key, old, digests, full, cycle))
                merged = dict(old["h"])
                if full:
                    merged = {}
                merged.update(digests)
            up = rec.get("uptime_s")
            clock = [rec.get("collected_at"), up] if up is not None else (old["t"] if old else [None, None])
            pending[key] = {"u": upload_id, "h": merged, "t": clock}
        return {"scan": batch.get("scan"), "cycle": cycle, "records": out}, pending

    def commit(self, pending, resync=()):
        """Take the acknowledged upload's state; forget devices the cloud asked to resync."""
        self.devices.update(pending)
        if resync is True:
            self.devices = {}
        else:
            for key in resync:
                self.devices.pop(key, None)
        while len(self.devices) > MAX_DEVICES:
            oldest = min(self.devices, key=lambda k: self.devices[k]["u"])
            del self.devices[oldest]
        atomic_write(self.path, json.dumps(self.devices))

    def forget(self):
        self.devices = {}
        atomic_write(self.path, "{}")


def _delta(rec, key, old, digests, full, cycle):
    d = {"=": [key, old["u"]]}
    h = old["h"]
    for name, digest in digests.items():
        if h.get(name) != digest:
            d[name] = rec[name]
    if full:
        gone = [name for name in h if name not in digests]
        if gone:
            d["-"] = sorted(gone)
    at, up = rec.get("collected_at"), rec.get("uptime_s")
    old_at, old_up = old["t"]
    if at is not None and cycle is not None:
        if at != cycle:
            d["@"] = at - cycle
    elif "collected_at" in rec:
        d["collected_at"] = at
    # uptime_s: predicted from the clock pair (collected_at, uptime_s) of the last reading
    # that had one; "^" carries the error when not 0, "^": null says "not read this time".
    if "uptime_s" not in rec:
        d["^"] = None
    elif up is not None and old_up is not None and at is not None and old_at is not None:
        err = up - (old_up + at - old_at)
        if err:
            d["^"] = err
    else:
        d["uptime_s"] = up
    return d
