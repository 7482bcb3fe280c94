"""fleetbox-cloud serve | migrate | check: the fleet service on its own (docs/cloud.md)."""
import argparse
import logging
import sys

from cloud import config as config_mod
from cloud import admin, db, logs


def main(argv=None):
    ap = argparse.ArgumentParser(prog="fleetbox-cloud", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the service (liberty, rescue, ...) until SIGTERM")
    p.add_argument("--config", "-c", required=True, help="TOML configuration file")
    p.add_argument("--database", help="database URL, overrides the file's")
    p.add_argument("--workers", type=int, help="worker processes, overrides the file's")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    m = sub.add_parser("migrate", help="bring a database's schema to the newest revision (or --revision)")
    m.add_argument("database", help="database URL or SQLite path")
    m.add_argument("--revision", default="head")
    m.add_argument("--downgrade", action="store_true", help="go down to --revision instead")
    c = sub.add_parser("check", help="say which schema revision a database is at")
    c.add_argument("database")
    admin.add_parsers(sub)
    args = ap.parse_args(argv)
    logs.setup(getattr(args, "log_level", None) or "info")
    try:
        if args.command == "serve":
            from cloud.server import serve
            cfg = config_mod.load(args.config, args.database, args.workers, args.log_level)
            logs.setup(cfg.log_level)
            return serve(cfg)
        if args.command == "admin":
            return admin.run_admin(args)
        if args.command == "notify":
            return admin.run_notify(args, config_mod.load(args.config))
        engine = db.make_engine(args.database, pool_size=1)
        if args.command == "migrate":
            (db.downgrade if args.downgrade else db.upgrade)(engine, args.revision)
        at = db.current(engine)
        print("%s: schema at %s (newest %s)" % (engine.url.render_as_string(hide_password=True), at, db.head()))
        return 0 if args.command == "migrate" or at == db.head() else 1
    except (config_mod.ConfigError, admin.AdminError) as e:
        logging.getLogger("fleetbox.cloud").error("%s", e)
        return 78


if __name__ == "__main__":
    sys.exit(main())
