"""The box configuration (`config.json` on the data partition): load, check, fill defaults.

A bad configuration must never stop the box silently: `load` names the field at fault.
"""
import binascii
import json

from fleetbox import targets

DEFAULTS = {
    "targets": [],
    "exclude": [],
    "communities": ["public"],
    "snmp_version": "2c",
    "snmp_port": 161,
    "timeout_ms": 1000,
    "retries": 1,
    "workers": 32,
    "intervals": {"full": 300},
    "endpoints": [],
    "ca": None,
    "pins": [],
    "spool_max": 256,
}


class ConfigError(ValueError):
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
    for ep in out["endpoints"]:
        if not isinstance(ep, dict) or not str(ep.get("url", "")).startswith("https://"):
            raise ConfigError("every endpoint needs an https:// url")
    if out["ca"] is not None:
        try:
            out["ca"] = binascii.a2b_base64(out["ca"])
        except (ValueError, TypeError):
            raise ConfigError("ca must be base64 DER")
    try:
        out["pins"] = [binascii.unhexlify(p) for p in out["pins"]]
    except (ValueError, TypeError):
        raise ConfigError("pins must be hex SPKI SHA-256 digests")
    out["communities"] = [c.encode() if isinstance(c, str) else c for c in out["communities"]]
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
