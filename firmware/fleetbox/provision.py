"""Zero-touch provisioning and configuration from the cloud (docs/provisioning.md).

The box shows its factory certificate (mutual TLS, server pinned by the factory's pin set)
and asks POST /v1/provision; once a dealer claimed it, the answer holds its envelope key and
a configuration in a sealed cloud answer (docs/downlink.md) under that key. A configuration is applied only
whole and only after config.check accepted it; a refused one is reported at the next
contact and the one in force stays. Nothing received here is executed or trusted unchecked.
"""
import binascii
import json

from fleetbox import config, downlink, https, port
from fleetbox.atomicfile import atomic_write, read_json
from fleetbox.errors import FleetboxError

MAX_ANSWER = downlink.MAX_BODY
BACKOFF_BASE_S = 5          # an unclaimed box asks again after 5, 10, 20 ... seconds,
BACKOFF_MAX_S = 300         # never less often than every 5 minutes
KEYS = "/keys.json"         # {"kid", "key"}: the envelope key the cloud gave (data partition)
STATE = "/provision.json"   # {"version", "refused"}
DOWN_SEQ = "/downlink.seq"  # the down seq of every sealed answer (shared with the uplink)
CONFIG = "/config.json"


def _check_config(v):
    """The down channel's `config` field: {"v": version available[, "body": the configuration]}."""
    if not isinstance(v, dict):
        return False
    n = v.get("v")
    return isinstance(n, int) and not isinstance(n, bool) and 0 < n < 1 << 31 and \
        isinstance(v.get("body", {}), dict)


downlink.register("config", _check_config)


class ProvisionError(FleetboxError):
    pass


class Revoked(ProvisionError):
    pass


def log(level, msg):
    port.log("provision", level, msg)


def _ingest_url(url):
    # the box uploads where it provisions unless its configuration names endpoints
    return url.rsplit("/v1/", 1)[0] + "/v1/ingest"


class Provisioner:
    def __init__(self, identity, data_dir, timeout_s=10):
        self.serial = identity["serial"]
        port.secret(identity["key"])
        self.client = (binascii.a2b_base64(identity["cert"]), binascii.a2b_base64(identity["key"]))
        self.factory_ca = binascii.a2b_base64(identity["ca"])
        self.factory_pins = [binascii.unhexlify(p) for p in identity["pins"]]
        self.endpoints = identity["provision"]
        self.dir = data_dir
        self.timeout_s = timeout_s
        self.state = read_json(data_dir + STATE) or {"version": 0}
        self.down = downlink.DownState(data_dir + DOWN_SEQ)   # the uplink shares this one
        self.keys = read_json(data_dir + KEYS)
        if self.keys:
            port.secret(self.keys.get("key"))
        self.bytes = 0          # request + answer bytes of the provisioning exchanges (bench)
        self.cfg = None         # the checked configuration in force (config.check's result)

    # -- what the box runs with
    def load(self):
        """The configuration in force, or None when the box is not provisioned yet."""
        if not self.keys or not self.state.get("version"):
            return None
        try:
            cfg = config.load(self.dir + CONFIG)
        except config.ConfigError as e:
            log(port.WARN, "configuration on flash unusable, asking the cloud again: %s" % e)
            return None
        self.cfg = self._complete(cfg)
        return self.cfg

    def _complete(self, cfg):
        # a configuration without endpoints uploads to the factory's endpoints, with the factory's pins
        if not cfg["endpoints"]:
            cfg["endpoints"] = [{"name": e["name"], "url": _ingest_url(e["url"]), "resolve": e.get("resolve")}
                                for e in self.endpoints]
            for e in cfg["endpoints"]:
                if e["resolve"] is None:
                    del e["resolve"]
        if cfg["ca"] is None:
            cfg["ca"] = self.factory_ca
            cfg["pins"] = cfg["pins"] or self.factory_pins
        return cfg

    def identity(self):
        """The uplink's identity: the serial and the envelope key the cloud gave."""
        return {"serial": self.serial, "kid": self.keys["kid"], "device_key": self.keys["key"]}

    # -- the exchange
    def _request(self):
        req = {"serial": self.serial, "kid": self.keys["kid"] if self.keys else 0,
               "version": self.state.get("version", 0)}
        if self.state.get("refused"):
            req["refused"] = self.state["refused"]
        return json.dumps(req).encode()

    def _trust(self):
        """(CA, pins) sets to try in order: the configuration's (rotated) first, the factory's last,
        so a configuration with a wrong pin can never cut the box off from its next configuration."""
        out = []
        if self.cfg is not None and self.cfg.get("ca"):
            out.append((self.cfg["ca"], self.cfg["pins"]))
        out.append((self.factory_ca, self.factory_pins))
        return out

    async def check(self):
        """One contact: 'unclaimed', 'current', 'updated' or 'refused'; raises Revoked, ProvisionError."""
        body = self._request()
        reasons = []
        for ep in self.endpoints:
            for ca, pins in self._trust():
                c = https.Connection(ep["url"], ca, pins, ep.get("resolve"), None, self.timeout_s, self.client)
                try:
                    status, reply = await c.arequest("POST", body, {"Connection": "close"})
                except (OSError, https.HttpError, ValueError) as e:
                    reasons.append("%s: %s" % (ep.get("name", "?"), e))
                    continue
                finally:
                    c.close()
                self.bytes += len(body) + len(reply)
                return self._answer(status, reply)
        raise ProvisionError("no provisioning endpoint answered: " + "; ".join(reasons))

    def _answer(self, status, reply):
        if status == 202:
            return "unclaimed"
        if status == 204:
            return "current"
        try:
            ans = json.loads(reply)
        except ValueError:
            ans = None
        if not isinstance(ans, dict):
            raise ProvisionError("HTTP %d without a JSON answer" % status)
        if status == 403 and ans.get("reason") == "revoked":
            raise Revoked("the cloud revoked this box")
        if status != 200:
            raise ProvisionError("HTTP %d %s" % (status, ans.get("reason", "")))
        if "key" in ans:
            self._take_key(ans)
        if "answer" in ans:
            return self._take_config(ans["answer"])
        return "current"

    def _take_key(self, ans):
        kid, key = ans.get("kid"), ans.get("key")
        if not (isinstance(kid, int) and 0 < kid < 1 << 32 and isinstance(key, str) and len(key) == 64):
            raise ProvisionError("malformed key in the answer")
        try:
            binascii.unhexlify(key)
        except ValueError:
            raise ProvisionError("malformed key in the answer")
        port.secret(key)
        self.keys = {"kid": kid, "key": key}
        atomic_write(self.dir + KEYS, json.dumps(self.keys))
        log(port.INFO, "envelope key %d received" % kid)

    def _take_config(self, answer):
        if not isinstance(answer, str) or len(answer) > MAX_ANSWER * 4 // 3 + 4 or not self.keys:
            raise ProvisionError("configuration answer too large or without a key")
        try:
            data = binascii.a2b_base64(answer)
            fields = downlink.open_answer(binascii.unhexlify(self.keys["key"]), self.keys["kid"], self.serial, data,
                                          self.down, accept=False)
        except (ValueError, downlink.DownlinkError) as e:
            raise ProvisionError("configuration answer refused: %s" % e)
        offer = fields.get("config") or {}
        version, raw = offer.get("v"), offer.get("body")
        if not (isinstance(version, int) and not isinstance(version, bool) and 0 < version < 1 << 31) \
                or not isinstance(raw, dict):
            raise ProvisionError("configuration answer without a version and a configuration")
        self.down.remember(fields["_seq"])    # authentic: never accepted again, whatever it holds
        try:
            cfg = self._complete(config.check(raw))
        except config.ConfigError as e:
            self.state["refused"] = {"version": version, "reason": str(e)[:200]}
            self._save_state()
            log(port.WARN, "configuration %d refused, %d stays: %s" % (version, self.state.get("version", 0), e))
            return "refused"
        atomic_write(self.dir + CONFIG, json.dumps(raw))
        self.state["version"] = version
        self.state.pop("refused", None)
        self._save_state()
        self.cfg = cfg
        log(port.INFO, "configuration %d in force" % version)
        return "updated"

    def _save_state(self):
        atomic_write(self.dir + STATE, json.dumps(self.state))


def backoff_s(n, hint=None):
    """Seconds before ask n+1 of an unclaimed box: doubling, bounded, and no later than the cloud's hint."""
    wait = min(BACKOFF_MAX_S, BACKOFF_BASE_S << min(n, 10))
    if isinstance(hint, int) and 0 < hint < wait:
        wait = hint
    return wait


def factory_reset(data_dir):
    """Everything the box received or collected goes (configuration, keys, spool, sequence and
    device state); the identity partition, the boot state and the loader partition (trust anchor,
    root rotation, pack floor) are elsewhere and stay. A removal the flash refuses stops nothing:
    the rest goes, what stayed is logged, and the box reboots anyway (a reset that halts half way
    helps no one). Returns False when something stayed."""
    try:
        port.remove_tree(data_dir, keep=True)   # through port: the flash switch sees these removals too
    except OSError as e:
        log(port.ERROR, "factory reset: some of the data partition could not be removed: %r" % e)
        return False
    return True
