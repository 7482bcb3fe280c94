"""Uplink: spooled batches -> delta encoding -> AES-256 envelope -> HTTPS -> liberty, else rescue.

The plaintext of each envelope (docs/payload.md) is an upload header {"v": 3, "u": upload
id, ...} followed by the batch, whose records are deltas against what the cloud acknowledged
before (fleetbox.delta), compressed (fleetbox.squeeze) against a preset dictionary
(fleetbox.paydict) that both sides hold. The upload id is the spool id,
so a batch resent after a lost acknowledgement is recognised by the cloud. Each
attempt gets a fresh envelope sequence number, persisted before it is used.

Failover, return to liberty and backoff are documented in docs/uplink.md. Every answer is a
sealed cloud answer (docs/downlink.md): only an authenticated answer bound to the attempt
acknowledges a batch, moves the sequence number or sets the clock.
"""
import binascii
import json

from fleetbox import cbor, downlink, envelope, https, paydict, port, squeeze
from fleetbox.errors import FleetboxError
from fleetbox.delta import DeltaState
from fleetbox.atomicfile import atomic_write
from fleetbox.spool import read_batch

PAYLOAD_VERSION = 3
CODEC_DICT1 = 1             # "z": the batch is raw DEFLATE (RFC 1951) with preset dictionary DICT1
COMPRESS_SLICE = 2048       # input bytes compressed between two yields to the other tasks
FAILOVER_AFTER = 2          # consecutive failures of an endpoint before the next one is tried
RETURN_AFTER_S = 600        # while on a fallback endpoint, try the first one again this often
BACKOFF_BASE_S = 10
SEQ_ON_FLASH_MAX = 1 << 48  # a larger one is damage: 2^48 uploads would take millions of years
BACKOFF_MAX_S = 900
MAX_FIXES = 3               # corrective answers (seq, clock) per endpoint and send that earn a resend
MAX_SEQ_JUMP = 1 << 32      # a last_seq further ahead of the box's own counter is not believed
MAX_PLAIN = 512             # a plain (unsealed) refusal longer than this is not even parsed for the log


def _start(outgoing):
    """A deflater over the batch's CBOR, the preset dictionary before it in the same buffer."""
    buf = bytearray(paydict.DICT1)
    cbor.dump(outgoing, buf.extend)
    return squeeze.Deflater(buf, len(paydict.DICT1))


def _finish(upload_id, outgoing, epoch, z):
    """Header + batch: compressed when that is shorter (a batch of a few bytes is not)."""
    head = {"v": PAYLOAD_VERSION, "u": upload_id}
    if "b" not in outgoing:
        head["e"] = epoch
    plain = len(z.buf) - len(paydict.DICT1)
    if len(z.out) + 3 < plain:     # 3: the header's "z": 1
        head["z"] = CODEC_DICT1
        out = bytearray(cbor.dumps(head))
        out.extend(z.out)
    else:
        out = bytearray(cbor.dumps(head))
        out.extend(memoryview(z.buf)[len(paydict.DICT1):])
    z.buf = z.out = None
    return out


def payload(upload_id, outgoing, epoch):
    """The plaintext of docs/payload.md: the upload header, then the (delta-encoded) batch,
    compressed against the preset dictionary when that makes it shorter.

    An upload without a delta base starts over, so it names the spool's epoch: after a
    wiped data partition the restarted upload ids are then new uploads, not retries."""
    z = _start(outgoing)
    while not z.step(4096):
        pass
    return _finish(upload_id, outgoing, epoch, z)


async def apayload(upload_id, outgoing, epoch):
    """payload(), yielding to the other tasks between slices of the compression."""
    z = _start(outgoing)
    while not z.step(COMPRESS_SLICE):
        await port.sleep_ms(0)
    return _finish(upload_id, outgoing, epoch, z)


class UplinkError(FleetboxError):
    pass


class Uplink:
    def __init__(self, cfg, identity, state_dir):
        if not cfg["endpoints"]:
            raise UplinkError("no cloud endpoints configured")
        self.endpoints = cfg["endpoints"]
        self.ca = cfg["ca"]
        self.pins = cfg["pins"]
        self.proxy = cfg.get("proxy")
        self.timeout_s = cfg.get("http_timeout_s", 10)
        self.keepalive = cfg.get("keepalive", True)
        port.secret(identity["device_key"])
        self.key = binascii.unhexlify(identity["device_key"])
        self.kid = identity["kid"]
        self.device_id = identity["serial"]
        self.seq_path = state_dir + "/uplink.seq"
        self.seq = self._read_seq()
        self.down = downlink.DownState(state_dir + "/downlink.seq")
        self.on_time = None         # on_time(unix_s): set the box's clock (App: Health.cloud_time)
        self.on_offer = None        # on_offer(offer): an update offer (fleetbox.updagent)
        self.delta = DeltaState(state_dir + "/uplink.delta")
        self.conns = [None] * len(self.endpoints)
        self.active = 0             # index of the endpoint uploads go to
        self.failures = 0           # consecutive failures of the active endpoint
        self.left_first_at = None   # ticks when we failed over from endpoint 0
        self.backoff_n = 0          # consecutive drains that failed everywhere
        self.next_try = None        # (ticks of the failure, backoff ms): drain() is not due before
        self.backoff_s = cfg.get("backoff_s") or [BACKOFF_BASE_S, BACKOFF_MAX_S]
        self.return_after_s = cfg.get("return_after_s", RETURN_AFTER_S)
        self.stats = {"sent": 0, "failed": 0, "bytes_out": 0, "last_endpoint": None, "failovers": 0,
                      "handshakes": 0, "duplicates": 0, "bad_answers": 0}

    def _read_seq(self):
        try:
            with open(self.seq_path) as f:
                seq = int(f.read())
        except (OSError, ValueError):
            return 0
        if 0 <= seq < SEQ_ON_FLASH_MAX:
            return seq
        # damaged: from 0, the cloud's replay answer tells the box where its numbers continue
        port.log("uplink", port.WARN, "sequence number on flash out of range, starting over: %d" % seq)
        return 0

    def _next_seq(self):
        # Persist first (atomically): after a power cut the box must never reuse a sequence number.
        self.seq += 1
        try:
            atomic_write(self.seq_path, str(self.seq))
        except OSError as e:
            # Flash full or failing: no upload without a persisted number; the batch stays spooled.
            raise UplinkError("cannot persist the sequence number: %s" % _describe(e))
        return self.seq

    def _conn(self, i):
        c = self.conns[i]
        if c is None:
            ep = self.endpoints[i]
            c = self.conns[i] = https.Connection(ep["url"], self.ca, self.pins, ep.get("resolve"),
                                                 self.proxy, self.timeout_s)
        return c

    def close(self):
        for c in self.conns:
            if c is not None:
                c.close()

    async def _post(self, i, body):
        """(status, reply) from endpoint i; a kept-alive connection the server dropped is retried once."""
        c = self._conn(i)
        for attempt in (0, 1):
            reused = c.open
            if not reused:
                self.stats["handshakes"] += 1
            try:
                status, reply = await c.arequest("POST", body, None if self.keepalive else {"Connection": "close"})
            except (OSError, https.HttpError):
                if reused and attempt == 0:
                    continue   # the server closed an idle connection: one more try on a fresh one
                raise
            return status, reply

    def _order(self):
        """Endpoint indexes to try, active first; the first endpoint again when it is time to return."""
        n = len(self.endpoints)
        order = [(self.active + k) % n for k in range(n)]
        if self.active and self.left_first_at is not None and \
                port.ticks_diff(port.ticks_ms(), self.left_first_at) >= self.return_after_s * 1000:
            order.remove(0)
            order.insert(0, 0)
        return order

    async def send(self, upload_id, batch, epoch):
        """Deliver one spooled batch; returns the acknowledging endpoint's name or raises UplinkError.

        Each attempt blocks the loop for at most a few socket timeouts (http_timeout_s each:
        connect, TLS, one read or write); between attempts the other tasks run (the health
        task feeds the watchdog)."""
        outgoing, pending = self.delta.encode(upload_id, batch)
        if batch.get("h"):
            outgoing["h"] = batch["h"]   # the box's failed-cycle counters (docs/payload.md)
        plaintext = await apayload(upload_id, outgoing, epoch)
        outgoing = None
        reasons = []
        for i in self._order():
            ep = self.endpoints[i]
            name = ep.get("name", ep["url"])
            tries = FAILOVER_AFTER if i == self.active else 1
            fixes = MAX_FIXES
            while tries > 0:
                await port.sleep_ms(0)
                seq = self._next_seq()
                body = envelope.seal(self.key, self.kid, self.device_id, seq, port.time_s(), plaintext)
                try:
                    status, reply = await self._post(i, body)
                except (OSError, https.HttpError, ValueError) as e:
                    reasons.append("%s: %s" % (name, _describe(e)))
                    self._failed(i)
                    tries -= 1
                    continue
                self.stats["bytes_out"] += len(body)
                body = None
                ans = self._answer(name, status, reply, seq)
                reply = None
                if ans is None:
                    reasons.append("%s: HTTP %d, no valid answer" % (name, status))
                    self._failed(i)
                    tries -= 1
                    if 400 <= status < 500:
                        break   # a plain refusal (no key, bad MAC...): the same again will not help
                    continue
                if ans.get("ok") is True and ans.get("upload", upload_id) == upload_id:
                    self._delivered(i, name, ans, pending)
                    return name
                reason = ans.get("reason")
                if fixes and reason == "replay" and self._skip_to(ans.get("last_seq")):
                    fixes -= 1
                    reasons.append("%s: sequence numbers continue after %d" % (name, self.seq))
                    continue
                if fixes and reason == "out-of-window" and "time" in ans:
                    fixes -= 1      # the clock was set from this answer: seal again with the right time
                    reasons.append("%s: clock was off, now %d" % (name, ans["time"]))
                    continue
                reasons.append("%s: HTTP %d %s" % (name, status, reason or "refused"))
                self._failed(i)
                tries -= 1
                if status < 500:
                    break   # the endpoint is up and said no: trying it again the same way will not help
        self.stats["failed"] += 1
        raise UplinkError("; ".join(reasons))

    def _answer(self, name, status, reply, seq):
        """The checked fields of the sealed answer to the envelope `seq`, or None (logged)."""
        try:
            ans = downlink.open_answer(self.key, self.kid, self.device_id, reply, self.down)
        except downlink.DownlinkError as e:
            self.stats["bad_answers"] += 1
            plain = _json(reply).get("reason") if len(reply) <= MAX_PLAIN else None
            port.log("uplink", port.WARN, "%s: HTTP %d, answer not accepted (%s)%s" % (
                name, status, e, "" if not isinstance(plain, str) else ", plain reason %r" % plain[:40]))
            return None
        if ans.get("re") != seq:
            self.stats["bad_answers"] += 1
            port.log("uplink", port.WARN, "%s: answer to envelope %r, not to %d: ignored" % (name, ans.get("re"), seq))
            return None
        if ans.get("config") is not None:
            self.stats["config_offer"] = ans["config"]   # a newer configuration (docs/provisioning.md)
        t = ans.get("time")
        if t is not None:
            self.stats["cloud_time"] = t
            if self.on_time is not None:
                self.on_time(t)
        if "offer" in ans and self.on_offer is not None:
            self.on_offer(ans["offer"])
        return ans

    def _skip_to(self, last):
        """Continue the sequence numbers after the cloud's `last` (this box's counter was rewound),
        within bounds: never backwards, never so far that a later seal could overflow."""
        if last is None or last < self.seq or last - self.seq > MAX_SEQ_JUMP:
            port.log("uplink", port.WARN, "cloud's last_seq %r not believed (own %d)" % (last, self.seq))
            return False
        self.seq = last
        return True

    def _failed(self, i):
        if i == self.active:
            self.failures += 1
            if self.failures >= FAILOVER_AFTER and len(self.endpoints) > 1:
                if self.active == 0:
                    self.left_first_at = port.ticks_ms()
                self.active = (self.active + 1) % len(self.endpoints)
                self.failures = 0
                self.stats["failovers"] += 1
        elif i == 0:
            self.left_first_at = port.ticks_ms()   # liberty still down: wait another period

    def _delivered(self, i, name, ack, pending):
        self.delta.commit(pending, ack.get("resync") or ())
        if ack.get("duplicate"):
            self.stats["duplicates"] += 1
        self.active = i
        self.failures = 0
        if i == 0:
            self.left_first_at = None
        self.stats["sent"] += 1
        self.stats["last_endpoint"] = name

    def due(self):
        """True when the backoff after failed drains has run out."""
        return self.next_try is None or port.ticks_diff(port.ticks_ms(), self.next_try[0]) >= self.next_try[1]

    async def drain(self, spool, budget=64):
        """Send spooled batches oldest first until the spool is empty, a send fails or budget is spent.

        On failure everywhere the next drain is due after an exponential backoff with jitter
        (docs/uplink.md). All uploads of a drain share one kept-alive TLS session, closed at its end.
        """
        sent = 0
        try:
            while sent < budget:
                item = spool.peek(read_batch)
                if item is None:
                    break
                upload_id, batch = item
                await self.send(upload_id, batch, spool.epoch)
                batch = item = None
                spool.ack(upload_id)
                sent += 1
                port.collect()
        except UplinkError:
            self.backoff_n += 1
            self.next_try = (port.ticks_ms(), backoff_ms(self.backoff_n, self.backoff_s[0], self.backoff_s[1]))
            raise
        finally:
            # One TLS session per drain: its buffers are not held through the next collection.
            self.close()
        self.backoff_n = 0
        self.next_try = None
        return sent


def backoff_ms(n, base_s=BACKOFF_BASE_S, max_s=BACKOFF_MAX_S, rand=None):
    """Delay before drain attempt n+1 after n failed ones: min(max, base * 2**(n-1)), scaled by a
    uniform random factor in [0.5, 1) ("equal jitter") so many boxes do not retry in step."""
    if rand is None:
        rand = port.urandom(1)[0] / 256
    ceiling = min(max_s, base_s * (1 << min(n - 1, 16)))
    return int(ceiling * 1000 * (0.5 + rand / 2))


def _describe(e):
    return "%s %s" % (type(e).__name__, e) if str(e) else type(e).__name__


def _json(reply):
    try:
        v = json.loads(reply)
        return v if isinstance(v, dict) else {}
    except (ValueError, TypeError, MemoryError):
        return {}
