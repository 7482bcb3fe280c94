"""The service's configuration: a TOML file (docs/cloud.md), a few command-line overrides.

    database = "postgresql://fleet@db.example/fleet"   # or "sqlite:///var/fleet.sqlite", or a path
    manifest = "/etc/fleetbox/manifest.json"           # fbtool's manufacturing manifest (device keys)
    factory_manifest = "/etc/fleetbox/factory.json"    # provisioning: fbtool factory --manifest (or a list);
                                                        # needs a listener with client_ca = the factory CA
    workers = 4
    log_level = "info"
    window_s = 86400                                    # envelope time window
    ingest_group = 64     # PostgreSQL: uploads stored per transaction at most (cloud/ingest_group.py); 0: one each
    [limits]
    max_body = 1048576
    body_timeout_s = 30
    keep_alive_s = 75
    [[listener]]
    name = "liberty"
    address = "0.0.0.0"
    port = 443
    cert = "/etc/fleetbox/liberty.pem"
    key = "/etc/fleetbox/liberty.key"
    # client_ca = "..."   a listener that asks for client certificates (provisioning)
    [smtp]                # notifications (cloud/notify.py): host, port, sender, starttls, user, password

Relative paths are taken from the configuration file's folder.
"""
import os
import tomllib

from cloud.app import Limits
from cloud.ingest_group import MAX_GROUP


class ConfigError(Exception):
    pass


class Listener:
    def __init__(self, name, address, port, cert, key, client_ca=None):
        self.name, self.address, self.port = name, address, int(port)
        self.cert, self.key, self.client_ca = cert, key, client_ca


class Config:
    def __init__(self, database, manifest, listeners, workers=1, log_level="info", window=86400, limits=None,
                 pool_size=8):
        self.database, self.manifest, self.listeners = database, manifest, listeners
        self.workers, self.log_level, self.window = int(workers), log_level, int(window)
        self.limits = limits or Limits()
        self.pool_size = int(pool_size)
        self.smtp = {}          # [smtp]: cloud.notify.Smtp's settings
        self.factory_manifests = []   # provisioning (cloud/provision.py) when not empty
        self.ingest_group = MAX_GROUP


def load(path, database=None, workers=None, log_level=None):
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError("%s: %s" % (path, e))
    base = os.path.dirname(os.path.abspath(path))

    def where(p):
        return p if p is None or os.path.isabs(p) else os.path.join(base, p)

    def need(d, k, what):
        if k not in d:
            raise ConfigError("%s: %s needs %r" % (path, what, k))
        return d[k]

    listeners = []
    for i, lst in enumerate(raw.get("listener") or []):
        what = "listener %d" % (i + 1)
        listeners.append(Listener(need(lst, "name", what), lst.get("address", "127.0.0.1"), lst.get("port", 443),
                                  where(need(lst, "cert", what)), where(need(lst, "key", what)),
                                  where(lst.get("client_ca"))))
    if not listeners:
        raise ConfigError("%s: no [[listener]]" % path)
    if len({lst.name for lst in listeners}) != len(listeners):
        raise ConfigError("%s: two listeners with one name" % path)
    db = database or need(raw, "database", "the file")
    if "://" not in db:
        db = where(db)
    lim = raw.get("limits") or {}
    try:
        limits = Limits(lim.get("max_body", 1 << 20), lim.get("body_timeout_s", 30), lim.get("keep_alive_s", 75))
        cfg = Config(db, where(need(raw, "manifest", "the file")), listeners,
                     workers if workers is not None else raw.get("workers", 1),
                     log_level or raw.get("log_level", "info"), raw.get("window_s", 86400), limits,
                     raw.get("pool_size", 8))
    except (TypeError, ValueError) as e:
        raise ConfigError("%s: %s" % (path, e))
    cfg.smtp = raw.get("smtp") or {}
    cfg.ingest_group = raw.get("ingest_group", cfg.ingest_group)
    if not isinstance(cfg.ingest_group, int) or cfg.ingest_group < 0:
        raise ConfigError("%s: ingest_group is a number of uploads, 0 or more" % path)
    factory = raw.get("factory_manifest") or []
    factory = [factory] if isinstance(factory, str) else factory
    if not isinstance(factory, list) or not all(isinstance(p, str) for p in factory):
        raise ConfigError("%s: factory_manifest is a path or a list of paths" % path)
    cfg.factory_manifests = [where(p) for p in factory]
    if cfg.factory_manifests and not any(lst.client_ca for lst in listeners):
        raise ConfigError("%s: factory_manifest needs a [[listener]] with client_ca (the factory CA)" % path)
    if cfg.workers < 1:
        raise ConfigError("%s: workers must be 1 or more" % path)
    return cfg
