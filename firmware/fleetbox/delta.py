"""Delta encoding of device records: only what changed since the last acknowledged upload.

The box numbers each device it has sent (a small integer, never reused) and keeps, per
device, a 4-byte digest of each top-level field of the record the cloud last acknowledged
(of each entry of the provenance map `sources`, which travels entry by entry),
plus the clock pair (collected_at, uptime_s) of its last uptime reading. A device seen
before travels as a delta record (its changed fields only) or, when nothing but the clock
moved, as two integers (number, collected_at offset) in the batch's "seen" list. The cloud merges these onto
the full records it keeps and names the devices it cannot rebuild ("resync"); those are
sent in full next time. Format: docs/payload.md. The state is one JSON file, replaced
atomically after each acknowledgement (a power cut in between only makes the next
upload of the same batch a duplicate, which the cloud acknowledges).
"""
import binascii
import hashlib
import json

from fleetbox import cbor
from fleetbox.spool import atomic_write

MAX_DEVICES = 512           # devices remembered; others are sent in full
UPTIME_SLACK_S = 1          # an uptime this close to the prediction is not sent (its own precision)
SCAN_CODES = ("discovery", "full", "counters", "supplies", "parts", "alerts")   # "s" as a small integer
_CLOCK = ("collected_at", "uptime_s")


def device_key(rec):
    """A device's identity across readings (the cloud computes the same)."""
    return rec.get("serial") or rec.get("mac") or "%s:%s" % (rec.get("ip"), rec.get("port") or 161)


def field_digest(value):
    h = hashlib.sha256()
    cbor.dump(value, h.update)
    return binascii.hexlify(h.digest()[:4]).decode()


def source_digests(sources):
    """The provenance map as one string of 12-hex-digit units: 4 digits of its key's digest,
    then 8 of its value's, sorted; the delta then names the entries that changed."""
    units = []
    for k, v in sources.items():
        units.append(field_digest(k)[:4] + field_digest(v))
    units.sort()
    return "".join(units)


def _units(digests):
    """{key digest: value digest} of a source_digests() string ({} for anything else)."""
    out = {}
    if isinstance(digests, str) and len(digests) % 12 == 0:
        for i in range(0, len(digests), 12):
            out[digests[i:i + 4]] = digests[i + 4:i + 12]
    return out


class DeltaState:
    def __init__(self, path):
        self.path = path
        try:
            with open(path) as f:
                state = json.load(f)
            self.devices, self.next_num, self.base = state["d"], state["n"], state["b"]
            if not _valid(self.devices, self.next_num, self.base):
                raise ValueError("damaged")
        except (OSError, ValueError, KeyError, TypeError):
            self.reset()   # no state: everything goes in full, which is always safe

    def reset(self):
        self.devices = {}   # device key -> {"n": number, "h": {field: digest}, "t": [collected_at, uptime_s]}
        #                     (only "n" after a resync: the next record goes in full)
        self.next_num = 1
        self.base = None    # the last upload id the cloud acknowledged

    def encode(self, upload_id, batch):
        """(compact batch to send, state to commit once the cloud acknowledged it)."""
        full = batch.get("scan") == "full"
        cycle = batch.get("cycle")
        records, seen = [], []
        pending = {}
        num = self.next_num
        for rec in batch["records"]:
            key = device_key(rec)
            old = pending.get(key) or self.devices.get(key)
            digests = {}
            for name, value in rec.items():
                if name == "sources" and isinstance(value, dict):
                    digests[name] = source_digests(value)
                elif name not in _CLOCK:
                    digests[name] = field_digest(value)
            if old is None or "h" not in old:
                if old is None:
                    n = num
                    num += 1
                else:
                    n = old["n"]   # resync: a device keeps its number
                first = dict(rec)
                first["#"] = n
                records.append(first)
                merged = digests
                up = rec.get("uptime_s")
            else:
                n = old["n"]
                d, up = _delta(rec, n, old, digests, full, cycle)
                if len(d) == 1 or (len(d) == 2 and "@" in d):
                    seen.append(n)
                    seen.append(d.get("@", 0))
                else:
                    records.append(d)
                merged = {} if full else dict(old["h"])
                if not full and "sources" in merged and "sources" in digests:
                    units = _units(merged["sources"])
                    units.update(_units(digests["sources"]))
                    digests["sources"] = "".join(sorted(k + v for k, v in units.items()))
                merged.update(digests)
            # the clock pair as the cloud will hold it (a predicted uptime when the error was elided)
            clock = [rec.get("collected_at"), up] if up is not None else ((old or {}).get("t") or [None, None])
            pending[key] = {"n": n, "h": merged, "t": clock}
        kind = batch.get("scan")
        out = {"s": SCAN_CODES.index(kind) if kind in SCAN_CODES else kind, "c": cycle}
        if records:
            out["r"] = records
        if seen:
            out["k"] = seen
        if self.base is not None:
            out["b"] = self.base
        return out, {"d": pending, "n": num, "u": upload_id}

    def commit(self, pending, resync=()):
        """Take the acknowledged upload's state; forget the devices the cloud could not rebuild."""
        self.devices.update(pending["d"])
        self.next_num = max(self.next_num, pending["n"])
        for key, dev in self.devices.items():
            if resync is True or dev["n"] in resync:
                self.devices[key] = {"n": dev["n"]}   # sent in full next time, under the same number
        self.base = pending["u"]
        while len(self.devices) > MAX_DEVICES:
            oldest = min(self.devices, key=lambda k: self.devices[k]["n"])
            del self.devices[oldest]
        atomic_write(self.path, json.dumps({"d": self.devices, "n": self.next_num, "b": self.base}))


def _valid(devices, next_num, base):
    """A state file of the right shape (a damaged one would fail every upload after it)."""
    if not (isinstance(devices, dict) and isinstance(next_num, int) and next_num > 0
            and (base is None or isinstance(base, int))):
        return False
    for dev in devices.values():
        if not (isinstance(dev, dict) and isinstance(dev.get("n"), int)
                and isinstance(dev.get("h", {}), dict) and isinstance(dev.get("t", []), list)):
            return False
    return True


def _delta(rec, n, old, digests, full, cycle):
    d = {"=": n}
    h = old["h"]
    gone = [name for name in h if name not in digests] if full else []
    for name, digest in digests.items():
        if h.get(name) == digest:
            continue
        if name == "sources" and isinstance(rec[name], dict):
            # provenance: only the entries that changed; the cloud merges them into the map it holds
            held, now = _units(h.get(name)), _units(digest)
            if "sources" in h and (len(held) * 12 != len(h[name]) or (full and any(k not in now for k in held))):
                gone.append(name)     # an entry went away (or an old state): the whole map replaces it
                d[name] = rec[name]
                continue
            patch = {}
            for k, v in rec[name].items():
                if held.get(field_digest(k)[:4]) != field_digest(v):
                    patch[k] = v
            if patch:
                d[name] = patch
        else:
            d[name] = rec[name]
    if gone:
        d["-"] = sorted(gone)
    at, up = rec.get("collected_at"), rec.get("uptime_s")
    old_at, old_up = old["t"]
    if at is not None and cycle is not None:
        if at != cycle:
            d["@"] = at - cycle
    elif "collected_at" in rec:
        d["collected_at"] = at
    # uptime_s: predicted from the clock pair (collected_at, uptime_s) the cloud holds; "^"
    # carries the error when it exceeds the slack, "^": null says "not read this time".
    # Returns (delta, the uptime the cloud will hold).
    if "uptime_s" not in rec:
        d["^"] = None
    elif up is not None and old_up is not None and at is not None and old_at is not None:
        predicted = old_up + at - old_at
        err = up - predicted
        if -UPTIME_SLACK_S <= err <= UPTIME_SLACK_S:
            up = predicted
        else:
            d["^"] = err
    else:
        d["uptime_s"] = up
    return d, up
