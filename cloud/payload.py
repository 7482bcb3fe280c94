"""The upload payload (docs/payload.md): the CBOR sequence a box sends inside an envelope, and
how delta records are merged onto the full record the cloud holds."""
import io
import zlib

import cbor2

from cloud.paydict import DICTIONARIES

SCAN_CODES = ("discovery", "full", "counters", "supplies", "parts", "alerts")   # v2 "s" as an integer
CONTROL = ("#", "=", "-", "@", "^")
CODECS = {1: DICTIONARIES[1]}   # v3 "z": raw DEFLATE (RFC 1951) with this preset dictionary
MAX_INFLATED = 1 << 20          # a batch inflating beyond this is refused (the largest body accepted)


class PayloadError(Exception):
    pass


class SourcesPatch(dict):
    """A version 3 delta's `sources`: the provenance entries that changed, merged key by key
    into the map the cloud holds (a version 2 delta's `sources` replaces it whole)."""


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def decode_payload(plaintext):
    """The payload of docs/payload.md -> (upload header, batch), both in the long form:
    head {"v", "upload"}, batch {"scan", "cycle", "records", "seen", "base"}. Accepts v1, v2
    and v3 (v2's batch, compressed against a preset dictionary)."""
    stream = io.BytesIO(plaintext)
    try:
        dec = cbor2.CBORDecoder(stream)
        head = dec.decode()
        if isinstance(head, dict) and head.get("v") == 3 and "z" in head:
            stream = io.BytesIO(_inflate(head, plaintext[stream.tell():]))
            dec = cbor2.CBORDecoder(stream)
        batch = dec.decode()
    except (cbor2.CBORDecodeError, EOFError, ValueError) as e:
        raise PayloadError("not a CBOR upload: %s" % e)
    if stream.read(1):
        raise PayloadError("trailing bytes after the batch")
    if not isinstance(head, dict) or head.get("v") not in (1, 2, 3):
        raise PayloadError("bad upload header %r" % (head,))
    v = head["v"]
    upload = head.get("upload" if v == 1 else "u")
    if not _int(upload) or upload < 0:
        raise PayloadError("bad upload id in header %r" % (head,))
    if not isinstance(batch, dict):
        raise PayloadError("batch is not a map")
    if v >= 2:
        kind = batch.get("s")
        if _int(kind):
            if not 0 <= kind < len(SCAN_CODES):
                raise PayloadError("unknown scan code %d" % kind)
            kind = SCAN_CODES[kind]
        batch = {"scan": kind, "cycle": batch.get("c"), "records": batch.get("r", []),
                 "seen": batch.get("k", []), "base": batch.get("b"), "h": batch.get("h")}
    else:
        batch = dict(batch, seen=[], base=None)
    if not isinstance(batch["records"], list) or not all(isinstance(r, dict) for r in batch["records"]):
        raise PayloadError("batch without a records list")
    if batch["scan"] is not None and not isinstance(batch["scan"], str):
        raise PayloadError("scan is not text")
    for k in ("cycle", "base"):
        if batch[k] is not None and not _int(batch[k]):
            raise PayloadError("%s is not an integer" % k)
    seen = batch["seen"]
    if not isinstance(seen, list) or len(seen) % 2 or not all(_int(x) for x in seen):
        raise PayloadError("seen must be a flat list of (device number, @) integer pairs")
    for r in batch["records"]:
        if not all(map(str.__instancecheck__, r)):     # isinstance(k, str) for each key, looped in C
            raise PayloadError("record with a non-text key")
        if v == 1:
            if not r.keys().isdisjoint(CONTROL):
                raise PayloadError("delta record in a version 1 upload")
            continue
        if ("#" in r) == ("=" in r):
            raise PayloadError("a version 2 record has exactly one of \"#\" (full) or \"=\" (delta)")
        if not _int(r.get("#", r.get("="))):
            raise PayloadError("device number is not an integer")
        if "=" in r and (not isinstance(r.get("-", []), list) or not _int(r.get("@", 0))
                         or not (r.get("^") is None or _int(r["^"]))):
            raise PayloadError("delta record with bad \"-\", \"@\" or \"^\"")
        if "#" in r and any(k in r for k in ("-", "@", "^")):
            raise PayloadError("full record with delta fields")
        if v == 3 and "=" in r and isinstance(r.get("sources"), dict):
            r["sources"] = SourcesPatch(r["sources"])
    epoch = head.get("e")
    if epoch is not None and not (_int(epoch) and 0 < epoch < 65536):
        raise PayloadError("bad spool epoch in header %r" % (head,))
    return {"v": v, "upload": upload, "epoch": epoch}, batch


def _inflate(head, data):
    """The batch's CBOR from a version 3 payload's compressed bytes, at most MAX_INFLATED of it
    (a small body must not expand into gigabytes: zip bombs)."""
    zdict = CODECS.get(head["z"]) if _int(head["z"]) else None
    if zdict is None:
        raise PayloadError("unknown codec %r" % (head["z"],))
    d = zlib.decompressobj(-15, zdict=zdict)
    try:
        out = d.decompress(data, MAX_INFLATED)
    except zlib.error as e:
        raise PayloadError("not a DEFLATE stream: %s" % e)
    if d.unconsumed_tail:
        raise PayloadError("batch inflates beyond %d bytes" % MAX_INFLATED)
    if not d.eof or d.unused_data:
        raise PayloadError("DEFLATE stream truncated or followed by trailing bytes")
    return out


def device_key(rec):
    """A device's identity across readings: its serial, else its MAC, else its address."""
    return rec.get("serial") or rec.get("mac") or "%s:%s" % (rec.get("ip"), rec.get("port", 161))


def merge(old, clock, delta, cycle):
    """(full record, clock) from the full record held and a delta record (docs/payload.md).

    clock is [collected_at, uptime_s] of the last reading that carried an uptime."""
    rec = dict(old)
    for k in delta.get("-", ()):
        rec.pop(k, None)
    for k, v in delta.items():
        if isinstance(v, SourcesPatch):
            held = rec.get(k)
            v = dict(held if isinstance(held, dict) else {}, **v)
        if k not in CONTROL:
            rec[k] = v
    if "collected_at" not in delta and cycle is not None:
        rec["collected_at"] = cycle + delta.get("@", 0)
    at = rec.get("collected_at")
    if "uptime_s" in delta:
        if delta["uptime_s"] is not None:
            clock = [at, delta["uptime_s"]]
    elif "^" in delta and delta["^"] is None:
        pass    # not read this time: the last value stays
    elif None not in clock and at is not None:
        rec["uptime_s"] = clock[1] + at - clock[0] + delta.get("^", 0)
        clock = [at, rec["uptime_s"]]
    return rec, clock


def lowest_supply(rec):
    levels = [s.get("percent") for s in rec.get("supplies") or [] if s.get("percent") is not None]
    return min(levels) if levels else None
