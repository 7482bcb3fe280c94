"""Uplink: spooled batches -> AES-256 envelope -> HTTPS -> liberty, else rescue.

The plaintext of each envelope is a CBOR sequence (docs/payload.md): an upload
header {"v", "upload"} followed by the spooled batch. The upload id is the spool
id, so a batch resent after a lost acknowledgement is recognised by the cloud.
Each attempt gets a fresh envelope sequence number, persisted before it is used.
"""
import binascii
import json

from fleetbox import cbor, envelope, https, port

CONTENT_TYPE = "application/vnd.fleetbox.envelope"


class UplinkError(Exception):
    pass


class Uplink:
    def __init__(self, cfg, identity, state_dir):
        if not cfg["endpoints"]:
            raise UplinkError("no cloud endpoints configured")
        self.endpoints = cfg["endpoints"]
        self.ca = cfg["ca"]
        self.pins = cfg["pins"]
        self.key = binascii.unhexlify(identity["device_key"])
        self.kid = identity["kid"]
        self.device_id = identity["serial"]
        self.seq_path = state_dir + "/uplink.seq"
        self.seq = self._read_seq()
        self.stats = {"sent": 0, "failed": 0, "bytes_out": 0, "last_endpoint": None}

    def _read_seq(self):
        try:
            with open(self.seq_path) as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def _next_seq(self):
        # Persist first: after a power cut the box must never reuse a sequence number.
        self.seq += 1
        with open(self.seq_path, "w") as f:
            f.write(str(self.seq))
        return self.seq

    def send(self, upload_id, batch):
        """Deliver one spooled batch; returns the acknowledging endpoint's name or raises UplinkError."""
        plaintext = cbor.dumps({"v": 1, "upload": upload_id}) + batch
        reasons = []
        for ep in self.endpoints:
            name = ep.get("name", ep["url"])
            body = envelope.seal(self.key, self.kid, self.device_id, self._next_seq(), port.time_s(), plaintext)
            try:
                status, reply = https.request("POST", ep["url"], body, self.ca, self.pins, ep.get("resolve"),
                                              headers={"Content-Type": CONTENT_TYPE})
            except (OSError, https.HttpError, ValueError) as e:
                reasons.append("%s: %s" % (name, _describe(e)))
                continue
            self.stats["bytes_out"] += len(body)
            if status == 200:
                self.stats["sent"] += 1
                self.stats["last_endpoint"] = name
                return name
            reasons.append("%s: HTTP %d %s" % (name, status, _reason(reply)))
        self.stats["failed"] += 1
        raise UplinkError("; ".join(reasons))

    def drain(self, spool, budget=64):
        """Send spooled batches oldest first until the spool is empty, a send fails or budget is spent."""
        sent = 0
        while sent < budget:
            item = spool.peek()
            if item is None:
                break
            upload_id, batch = item
            self.send(upload_id, batch)
            spool.ack(upload_id)
            sent += 1
        return sent


def _describe(e):
    return "%s %s" % (type(e).__name__, e) if str(e) else type(e).__name__


def _reason(reply):
    try:
        return json.loads(reply).get("reason", "")
    except (ValueError, AttributeError):
        return ""
