"""Uplink: spooled batches -> delta encoding -> AES-256 envelope -> HTTPS -> liberty, else rescue.

The plaintext of each envelope is a CBOR sequence (docs/payload.md): an upload
header {"v": 2, "u": upload id} followed by the batch, whose records are deltas against
what the cloud acknowledged before (fleetbox.delta). The upload id is the spool id,
so a batch resent after a lost acknowledgement is recognised by the cloud. Each
attempt gets a fresh envelope sequence number, persisted before it is used.

Failover, return to liberty and backoff are documented in docs/uplink.md.
"""
import binascii
import json

from fleetbox import cbor, envelope, https, port
from fleetbox.errors import FleetboxError
from fleetbox.delta import DeltaState
from fleetbox.atomicfile import atomic_write

PAYLOAD_VERSION = 2
FAILOVER_AFTER = 2          # consecutive failures of an endpoint before the next one is tried
RETURN_AFTER_S = 600        # while on a fallback endpoint, try the first one again this often
BACKOFF_BASE_S = 10
BACKOFF_MAX_S = 900


def payload(upload_id, outgoing, epoch):
    """The plaintext of docs/payload.md: the upload header, then the (delta-encoded) batch.

    An upload without a delta base starts over, so it names the spool's epoch: after a
    wiped data partition the restarted upload ids are then new uploads, not retries."""
    head = {"v": PAYLOAD_VERSION, "u": upload_id}
    if "b" not in outgoing:
        head["e"] = epoch
    return cbor.dumps(head) + cbor.dumps(outgoing)


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
                      "handshakes": 0, "duplicates": 0}

    def _read_seq(self):
        try:
            with open(self.seq_path) as f:
                return int(f.read())
        except (OSError, ValueError):
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
        plaintext = payload(upload_id, outgoing, epoch)
        outgoing = None
        reasons = []
        for i in self._order():
            ep = self.endpoints[i]
            name = ep.get("name", ep["url"])
            tries = FAILOVER_AFTER if i == self.active else 1
            for _ in range(tries):
                await port.sleep_ms(0)
                body = envelope.seal(self.key, self.kid, self.device_id, self._next_seq(), port.time_s(), plaintext)
                try:
                    status, reply = await self._post(i, body)
                except (OSError, https.HttpError, ValueError) as e:
                    reasons.append("%s: %s" % (name, _describe(e)))
                    self._failed(i)
                    continue
                self.stats["bytes_out"] += len(body)
                if status in (200, 204):   # 204: stored, and the cloud has nothing to tell
                    self._delivered(i, name, reply, pending)
                    return name
                ack = _json(reply)
                if status == 409 and ack.get("reason") == "replay" and _ahead(ack.get("last_seq"), self.seq):
                    # The cloud saw higher sequence numbers (this box's state was erased): skip past them.
                    self.seq = ack["last_seq"]
                    reasons.append("%s: sequence numbers continue after %d" % (name, self.seq))
                    continue
                reasons.append("%s: HTTP %d %s" % (name, status, ack.get("reason", "")))
                self._failed(i)
                if status < 500:
                    break   # the endpoint is up and said no: trying it again the same way will not help
        self.stats["failed"] += 1
        raise UplinkError("; ".join(reasons))

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

    def _delivered(self, i, name, reply, pending):
        ack = _json(reply)
        self.delta.commit(pending, ack.get("resync") or ())
        if ack.get("duplicate"):
            self.stats["duplicates"] += 1
        self.active = i
        self.failures = 0
        if i == 0:
            self.left_first_at = None
        self.stats["sent"] += 1
        self.stats["last_endpoint"] = name
        # The cloud says its time only when the envelope's ts was off (else it answers 204).
        self.stats["cloud_time"] = ack.get("time")

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
                item = spool.peek(json.load)
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
    except (ValueError, TypeError):
        return {}


def _ahead(last, seq):
    return isinstance(last, int) and not isinstance(last, bool) and last >= seq
