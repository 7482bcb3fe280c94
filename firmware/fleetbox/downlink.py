"""The cloud -> box channel: every answer of the cloud is a sealed `down` envelope (docs/downlink.md).

    state = DownState(data_dir + "/downlink.seq")
    fields = open_answer(key, kid, device_id, body, state)    # or raises DownlinkError

An answer is believed only after its MAC (down keys of the box's current envelope key), its
device id, its content type and its sequence number (strictly above the last accepted one,
kept on flash) checked out; its CBOR map is then type-checked field by field. Callers log a
DownlinkError and go on as if no answer had come: never fatal, never trusted.
"""
from fleetbox import cbor, envelope, port
from fleetbox.atomicfile import atomic_write
from fleetbox.errors import FleetboxError
from fleetbox.port import const

CT_ANSWER = const(2)               # envelope content type "cloud answer"
MAX_BODY = const(16384)            # a sealed answer longer than this is refused unread
MAX_DEPTH = const(6)
MAX_ITEMS = const(1024)
MAX_SEQ = (1 << 63) - 1            # seq and counters fit a signed 64-bit column in the cloud
MIN_TIME = const(1577836800)       # 2020-01-01: a `time` before it is a broken cloud clock
MAX_TIME = 0xFFFFFFFF              # the envelope's ts is a u32
MAX_TEXT = const(256)
MAX_RESYNC = const(256)


class DownlinkError(FleetboxError):
    """A refused answer; .reason: replay, bad-mac (or another envelope reason), device, kid,
    content-type, too-large, cbor, not-a-map, field (docs/downlink.md section 4)."""

    def __init__(self, reason, msg=None):
        super().__init__(reason if msg is None else reason + ": " + msg)
        self.reason = reason


def _uint(v, hi):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= hi


def _check_bool(v):
    return isinstance(v, bool)


def _check_seq(v):
    return _uint(v, MAX_SEQ)


def _check_time(v):
    return _uint(v, MAX_TIME) and v >= MIN_TIME


def _check_resync(v):
    # True: send everything in full; a list: the device numbers the cloud does not know.
    if v is True or v is False:
        return True
    if not isinstance(v, list) or len(v) > MAX_RESYNC:
        return False
    for n in v:
        if not _uint(n, 0xFFFFFFFF):
            return False
    return True


def _check_text(v):
    return isinstance(v, str) and len(v) <= MAX_TEXT


def _check_map(v):
    # The branch that registered the field checks its contents; here only its shape.
    return isinstance(v, dict)


# The field registry of docs/downlink.md section 3: name -> check. Unknown names are dropped.
FIELDS = {
    "ok": _check_bool,
    "re": _check_seq,
    "upload": _check_seq,
    "duplicate": _check_bool,
    "reason": _check_text,
    "last_seq": _check_seq,
    "resync": _check_resync,
    "time": _check_time,
    "config": _check_map,
    "offer": _check_map,
    "revoked": _check_bool,
}


def register(name, check):
    """Add a field (a branch's own): check(value) -> bool."""
    FIELDS[name] = check


class DownState:
    """The last accepted down seq, on flash: an answer at or below it is a replay."""

    def __init__(self, path):
        self.path = path
        self.last = 0
        try:
            with open(path) as f:
                v = int(f.read())
            if _check_seq(v):
                self.last = v
        except (OSError, ValueError):
            pass

    def remember(self, seq):
        # Persist before acting on the answer: after a power cut it must not be accepted again.
        atomic_write(self.path, str(seq))
        self.last = seq


def check_fields(doc):
    """The registered fields of an answer's map, each checked; DownlinkError names a bad one."""
    if not isinstance(doc, dict):
        raise DownlinkError("not-a-map")
    out = {}
    for k, v in doc.items():
        check = FIELDS.get(k)
        if check is None:
            continue
        if not check(v):
            raise DownlinkError("field", "%r: bad type or out of range" % (k,))
        out[k] = v
    return out


def open_answer(key, kid, device_id, body, state, accept=True):
    """The checked fields (a dict) of a sealed answer, plus "_seq" and "_ts" of its envelope.

    Raises DownlinkError (every envelope error included). With accept=False the down seq is
    checked but not recorded (a caller that records it itself once it acted)."""
    if not body:
        raise DownlinkError("malformed", "no sealed answer")
    if len(body) > MAX_BODY:
        raise DownlinkError("too-large", "%d bytes (limit %d)" % (len(body), MAX_BODY))
    try:
        hdr = envelope.parse_header(body)
        if hdr["device_id"] != device_id:
            raise DownlinkError("device", "addressed to %s" % hdr["device_id"])
        if hdr["kid"] != kid:
            raise DownlinkError("kid", "kid %d, not %d" % (hdr["kid"], kid))
        if hdr["content_type"] != CT_ANSWER:
            raise DownlinkError("content-type", "%d" % hdr["content_type"])
        hdr, plaintext = envelope.open_(key, body, envelope.DOWN)
    except envelope.EnvelopeError as e:
        msg = str(e)
        raise DownlinkError(e.reason, msg[len(e.reason) + 2:] if msg.startswith(e.reason + ": ") else None)
    seq = hdr["seq"]
    if seq <= state.last:
        raise DownlinkError("replay", "seq %d, last accepted %d" % (seq, state.last))
    if seq > MAX_SEQ:
        raise DownlinkError("malformed", "seq %d out of range" % seq)
    try:
        doc = cbor.loads(plaintext, MAX_DEPTH, MAX_ITEMS)
    except ValueError as e:
        raise DownlinkError("cbor", str(e))
    fields = check_fields(doc)
    if accept:
        try:
            state.remember(seq)
        except OSError as e:
            # Flash full: act on it all the same; a replay of it would only repeat what it says.
            port.log("downlink", port.WARN, "down seq %d not saved: %s" % (seq, e))
            state.last = seq
    fields["_seq"] = seq
    fields["_ts"] = hdr["ts"]
    return fields
