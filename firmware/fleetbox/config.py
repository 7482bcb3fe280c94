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
    "snmp_port": 161,
    "timeout_ms": 1000,
    "retries": 1,
    "workers": 2,           # printers collected at once (discovery keeps up to 256 probes in flight)
    "intervals": {"full": 300},
    "endpoints": [],
    "ca": None,
    "pins": [],
    "spool_max": 256,
    "pace_ms": 10,          # least time between two requests to one printer (gentle polling)
    "web_ports": {},        # printers' web pages: profile port -> port used ({"80": 8080}); docs/profiles.md
    "spool_max_bytes": None,
    # uplink (docs/uplink.md)
    "proxy": None,
    "keepalive": True,
    "http_timeout_s": 10,
    "backoff_s": [10, 900],
    "return_after_s": 600,
    "log_level": "info",    # the box's log from this level up: debug, info, warn, error, off (docs/logging.md)
}


# Scan kinds (docs/profiles.md, fleetbox.collector.KINDS); each may have its own interval.
SCAN_KINDS = ("discovery", "full", "counters", "supplies", "parts", "alerts")


class ConfigError(FleetboxError):
    pass


def check(cfg):
    """Return a complete config dict from `cfg` (a dict), or raise ConfigError naming the field."""
    if not isinstance(cfg, dict):
        raise ConfigError("config is not an object")
    out = {}
    for k, v in DEFAULTS.items():
        out[k] = cfg.get(k, v)
    for k in ("targets", "exclude", "communities", "endpoints", "pins"):
        if not isinstance(out[k], list):
            raise ConfigError("%s must be a list" % k)
    try:
        for spec in out["targets"] + out["exclude"]:
            targets.parse(spec)
    except targets.TargetError as e:
        raise ConfigError("targets: %s" % e)
    if out["snmp_version"] not in ("1", "2c"):
        raise ConfigError("snmp_version must be '1' or '2c'")
    for k in ("snmp_port", "timeout_ms", "retries", "workers", "spool_max"):
        if not isinstance(out[k], int) or out[k] < 0:
            raise ConfigError("%s must be a non-negative integer" % k)
    iv = out["intervals"]
    if not isinstance(iv, dict) or not all(isinstance(v, (int, float)) and v > 0 for v in iv.values()):
        raise ConfigError("intervals must map scan kinds to positive seconds")
    for k in iv:
        if k not in SCAN_KINDS:
            raise ConfigError("intervals: unknown scan kind %r (one of %s)" % (k, ", ".join(SCAN_KINDS)))
    if not isinstance(out["pace_ms"], int) or out["pace_ms"] < 0:
        raise ConfigError("pace_ms must be a non-negative integer")
    wp = out["web_ports"]
    if not isinstance(wp, dict) or not all(str(k).isdigit() and isinstance(v, int) and 0 < v < 65536
                                           for k, v in wp.items()):
        raise ConfigError("web_ports must map ports to ports ({\"80\": 8080})")
    for ep in out["endpoints"]:
        if not isinstance(ep, dict) or not str(ep.get("url", "")).startswith("https://"):
            raise ConfigError("every endpoint needs an https:// url")
    px = out["proxy"]
    if px is not None and (not isinstance(px, dict) or not str(px.get("url", "")).startswith("http://")):
        raise ConfigError("proxy must be {\"url\": \"http://host:port\", \"user\", \"password\"}")
    b = out["backoff_s"]
    if not (isinstance(b, list) and len(b) == 2 and all(isinstance(x, int) and x > 0 for x in b) and b[0] <= b[1]):
        raise ConfigError("backoff_s must be [base, max] positive seconds")
    for k in ("http_timeout_s", "return_after_s"):
        if not isinstance(out[k], int) or out[k] <= 0:
            raise ConfigError("%s must be a positive integer" % k)
    spool_max = out["spool_max_bytes"]
    if spool_max is not None and (not isinstance(spool_max, int) or spool_max <= 0):
        raise ConfigError("spool_max_bytes must be a positive integer")
    if out["ca"] is not None:
        try:
            out["ca"] = binascii.a2b_base64(out["ca"])
        except (ValueError, TypeError):
            raise ConfigError("ca must be base64 DER")
    try:
        out["pins"] = [binascii.unhexlify(p) for p in out["pins"]]
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


def load(path):
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError:
        raise ConfigError("no configuration at %s" % path)
    except ValueError as e:
        raise ConfigError("configuration at %s is not JSON: %s" % (path, e))
    return check(raw)
