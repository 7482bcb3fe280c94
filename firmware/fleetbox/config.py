"""The box configuration (`config.json` on the data partition): load, check, fill defaults.

A bad configuration must never stop the box silently: `load` names the field at fault.
"""
import binascii
import json

from fleetbox import port, targets
from fleetbox.errors import FleetboxError

DEFAULTS = {
    "targets": [],
    "exclude": [],
    "communities": ["public"],
    "snmp_version": "2c",
    "snmp_v3": [],          # SNMPv3 users: {"user", "auth", "auth_pass", "priv", "priv_pass", "context"}
    "snmp_port": 161,
    "timeout_ms": 1000,
    "retries": 1,
    "workers": 0,           # printers collected at once; 0: 2 where the heap holds them, else 1 (main.collectors)
    "intervals": {"full": 300},
    "endpoints": [],
    "ca": None,
    "pins": [],
    "spool_max": 256,
    "pace_ms": 10,          # least time between two requests to one printer (gentle polling)
    "ping": True,           # one ICMP echo to a printer fallen silent: "answers ping, SNMP silent" (docs/collection.md)
    "web_ports": {},        # printers' web pages: profile port -> port used ({"80": 8080}); docs/profiles.md
    "spool_max_bytes": None,
    # uplink (docs/uplink.md)
    "proxy": None,
    "keepalive": True,
    "http_timeout_s": 10,
    "backoff_s": [10, 900],
    "return_after_s": 600,
    "log_level": "info",    # the box's log from this level up: debug, info, warn, error, off (docs/logging.md)
    "config_check_s": 900,  # how often the box asks the cloud for a newer configuration (docs/provisioning.md)
}


# Scan kinds (docs/profiles.md, fleetbox.collector.KINDS); each may have its own interval.
SCAN_KINDS = ("discovery", "full", "counters", "supplies", "parts", "alerts")

# Bounds (docs/provisioning.md, "Validation"): a config from the cloud can hurt the box only this much.
MAX_SPECS = 64              # target and exclusion specs
MAX_ADDRESSES = 65536       # addresses the targets cover (a /16)
MAX_ITEMS = 16              # communities, v3 users, endpoints, pins, web ports
MAX_TEXT = 255              # any string
MAX_CA = 4096               # DER bytes
INT_RANGES = {"snmp_port": (1, 65535), "timeout_ms": (1, 60000), "retries": (0, 5), "workers": (0, 256),
              "spool_max": (1, 4096), "pace_ms": (0, 10000), "http_timeout_s": (1, 300),
              "return_after_s": (1, 86400), "config_check_s": (1, 86400)}
INTERVAL_S = (1, 7 * 86400)
V3_KEYS = ("user", "auth", "auth_pass", "priv", "priv_pass", "context")
ENDPOINT_KEYS = ("name", "url", "resolve")


class ConfigError(FleetboxError):
    pass


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _text(v, field, empty=False):
    """A string of printable characters (no control characters: they would end up in HTTP heads)."""
    if not isinstance(v, str) or len(v) > MAX_TEXT or (not v and not empty):
        raise ConfigError("%s must be a string of 1..%d characters" % (field, MAX_TEXT))
    for c in v:
        if ord(c) < 32 or ord(c) == 127:
            raise ConfigError("%s holds a control character" % field)
    return v


def _list(v, field, most=MAX_ITEMS):
    if not isinstance(v, list):
        raise ConfigError("%s must be a list" % field)
    if len(v) > most:
        raise ConfigError("%s: at most %d entries" % (field, most))
    return v


def _url(v, field, scheme):
    _text(v, field)
    if not v.startswith(scheme) or " " in v or len(v) <= len(scheme):
        raise ConfigError("%s must be a %s URL without spaces" % (field, scheme))
    return v


def _der_ok(der):
    """The CA parses: one DER SEQUENCE (a certificate) filling the bytes exactly."""
    if len(der) < 4 or der[0] != 0x30:
        return False
    n, pos = der[1], 2
    if n & 0x80:
        k = n & 0x7F
        if not 0 < k <= 2:
            return False
        n = int.from_bytes(der[2:2 + k], "big")
        pos += k
    return pos + n == len(der)


def _v3_user(u, i):
    field = "snmp_v3[%d]" % i
    if not isinstance(u, dict):
        raise ConfigError("%s must be an object" % field)
    for k in u:
        if k not in V3_KEYS:
            raise ConfigError("%s: unknown key %r" % (field, k))
    _text(u.get("user"), field + ".user")
    for k in ("auth", "auth_pass", "priv", "priv_pass"):
        if u.get(k) is not None:
            _text(u[k], "%s.%s" % (field, k))
    _text(u.get("context", ""), field + ".context", empty=True)
    from fleetbox import usm
    try:
        usm.User(u["user"], u.get("auth"), u.get("auth_pass"), u.get("priv"), u.get("priv_pass"))
    except usm.UsmError as e:
        raise ConfigError("%s: %s" % (field, e))
    for k in ("auth_pass", "priv_pass"):
        port.secret(u.get(k))


def _check_targets(out):
    total = 0
    try:
        for spec in _list(out["targets"], "targets", MAX_SPECS) + _list(out["exclude"], "exclude", MAX_SPECS):
            _text(spec, "targets")
            first, last, _ = targets.parse(spec, out["snmp_port"])
            total += 1 if last is None else last - first + 1
    except targets.TargetError as e:
        raise ConfigError("targets: %s" % e)
    if total > MAX_ADDRESSES:
        raise ConfigError("targets cover %d addresses (at most %d)" % (total, MAX_ADDRESSES))


def _check_uplink(out):
    """Endpoints and proxy; returns the proxy (or None)."""
    for i, ep in enumerate(_list(out["endpoints"], "endpoints")):
        if not isinstance(ep, dict):
            raise ConfigError("every endpoint needs an https:// url")
        for k in ep:
            if k not in ENDPOINT_KEYS:
                raise ConfigError("endpoints[%d]: unknown key %r" % (i, k))
        _url(ep.get("url"), "endpoints[%d]: every endpoint needs an https:// url" % i, "https://")
        for k in ("name", "resolve"):
            if k in ep:
                _text(ep[k], "endpoints[%d].%s" % (i, k))
    px = out["proxy"]
    if px is not None:
        if not isinstance(px, dict) or not isinstance(px.get("url"), str) or not px["url"].startswith("http://"):
            raise ConfigError("proxy must be {\"url\": \"http://host:port\", \"user\", \"password\"}")
        for k in px:
            if k not in ("url", "user", "password"):
                raise ConfigError("proxy: unknown key %r" % (k,))
            _text(px[k], "proxy." + k, empty=k == "password")
    return px


def check(cfg):
    """Return a complete config dict from `cfg` (a dict), or raise ConfigError naming the field.

    Every field is checked for type, range and size, and unknown keys are refused: a typo must
    not silently leave a default in force, and a config from the cloud must not crash the box."""
    if not isinstance(cfg, dict):
        raise ConfigError("config is not an object")
    for k in cfg:
        if k not in DEFAULTS:
            raise ConfigError("unknown key %r" % (k,))
    out = {}
    for k, v in DEFAULTS.items():
        out[k] = cfg.get(k, v)
    for k, (lo, hi) in INT_RANGES.items():
        if not _int(out[k]) or not lo <= out[k] <= hi:
            raise ConfigError("%s must be an integer in %d..%d" % (k, lo, hi))
    _check_targets(out)
    if out["snmp_version"] not in ("1", "2c", "3"):
        raise ConfigError("snmp_version must be '1', '2c' or '3'")
    for i, u in enumerate(_list(out["snmp_v3"], "snmp_v3")):
        _v3_user(u, i)
    if out["snmp_version"] == "3" and not out["snmp_v3"]:
        raise ConfigError("snmp_version '3' needs snmp_v3 users")
    for c in _list(out["communities"], "communities"):
        _text(c, "communities")
    iv = out["intervals"]
    if not isinstance(iv, dict) or not iv:
        raise ConfigError("intervals must map scan kinds to seconds")
    for k, v in iv.items():
        if k not in SCAN_KINDS:
            raise ConfigError("intervals: unknown scan kind %r (one of %s)" % (k, ", ".join(SCAN_KINDS)))
        if not (_int(v) or isinstance(v, float)) or not INTERVAL_S[0] <= v <= INTERVAL_S[1]:
            raise ConfigError("intervals: %s must be %d..%d seconds" % (k, INTERVAL_S[0], INTERVAL_S[1]))
    wp = out["web_ports"]
    if not isinstance(wp, dict) or len(wp) > MAX_ITEMS or not all(
            isinstance(k, str) and k.isdigit() and 0 < int(k) < 65536 and _int(v) and 0 < v < 65536
            for k, v in wp.items()):
        raise ConfigError("web_ports must map ports to ports ({\"80\": 8080})")
    px = _check_uplink(out)
    b = out["backoff_s"]
    if not (isinstance(b, list) and len(b) == 2 and all(_int(x) and 0 < x <= 86400 for x in b) and b[0] <= b[1]):
        raise ConfigError("backoff_s must be [base, max] positive seconds")
    spool_max = out["spool_max_bytes"]
    if spool_max is not None and (not _int(spool_max) or not 1 <= spool_max <= 1 << 30):
        raise ConfigError("spool_max_bytes must be an integer in 1..2**30")
    if not isinstance(out["keepalive"], bool):
        raise ConfigError("keepalive must be true or false")
    if not isinstance(out["ping"], bool):
        raise ConfigError("ping must be true or false")
    if out["ca"] is not None:
        try:
            if not isinstance(out["ca"], str) or len(out["ca"]) > MAX_CA * 4 // 3 + 4:
                raise ValueError
            out["ca"] = binascii.a2b_base64(out["ca"])
        except (ValueError, TypeError):
            raise ConfigError("ca must be base64 DER")
        if not _der_ok(out["ca"]):
            raise ConfigError("ca does not parse as a DER certificate")
    try:
        out["pins"] = [binascii.unhexlify(p) for p in _list(out["pins"], "pins")]
    except (ValueError, TypeError):
        raise ConfigError("pins must be hex SPKI SHA-256 digests")
    # TLS policy (docs/uplink.md): the pin is what the box trusts, so no endpoint goes without one.
    if any(len(p) != 32 for p in out["pins"]):
        raise ConfigError("pins must be SPKI SHA-256 digests of 32 bytes (64 hex digits)")
    if out["endpoints"] and (not out["pins"] or out["ca"] is None):
        raise ConfigError("endpoints need a ca and at least one pin")
    out["communities"] = [c.encode() if isinstance(c, str) else c for c in out["communities"]]
    if out["log_level"] not in port.LEVELS:
        raise ConfigError("log_level must be one of %s" % ", ".join(port.LEVELS))
    for c in out["communities"]:
        port.secret(c)
    if px is not None:
        port.secret(px.get("password"))
    return out


def credentials(cfg):
    """The SNMP credentials to try, in order: v3 users first, then the communities (none for '3')."""
    from fleetbox import snmp
    creds = [snmp.Credential.v3(u["user"], u.get("auth"), u.get("auth_pass"), u.get("priv"), u.get("priv_pass"),
                                u.get("context", "")) for u in cfg["snmp_v3"]]
    if cfg["snmp_version"] != "3":
        creds += [snmp.Credential(cfg["snmp_version"], c) for c in cfg["communities"]]
    return creds


def load(path):
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError:
        raise ConfigError("no configuration at %s" % path)
    except ValueError as e:
        raise ConfigError("configuration at %s is not JSON: %s" % (path, e))
    return check(raw)
