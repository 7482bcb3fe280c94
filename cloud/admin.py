"""`fleetbox-cloud admin DATABASE VERB ...`: tenants, users and tokens from the command line, and
`fleetbox-cloud notify`. Every change is audited with the actor `cli:<login name>`.

    admin DB bootstrap --dealer "Acme Print" --email boss@acme.example     (password on stdin)
    admin DB customer --dealer D NAME          admin DB site --dealer D --customer C NAME
    admin DB user --dealer D --email E --role R [--customer C]              (password on stdin)
    admin DB token --email E [--label L] [--days N]                         (prints the token once)
    admin DB assign BOX --dealer D --customer C --site S                    (or --unclaim)
    admin DB rule --dealer D --customer C --kind toner|alert|silent [--threshold N] [--code C] --to ADDR[,ADDR]
"""
import getpass
import os
import sys

from sqlalchemy import select

from cloud import accounts, db, notify, tenancy
from cloud.audit import audit
from cloud.tenancy import customers, dealers, sites, users


class AdminError(Exception):
    pass


def add_parsers(sub):
    a = sub.add_parser("admin", help="tenants, users, tokens, box assignments, notification rules")
    a.add_argument("database", help="database URL or SQLite path")
    verbs = a.add_subparsers(dest="verb", required=True)
    b = verbs.add_parser("bootstrap", help="the first dealer (owner of the device keys) and its administrator")
    b.add_argument("--dealer", required=True)
    b.add_argument("--email", required=True)
    c = verbs.add_parser("customer")
    c.add_argument("--dealer", required=True)
    c.add_argument("name")
    s = verbs.add_parser("site")
    s.add_argument("--dealer", required=True)
    s.add_argument("--customer", required=True)
    s.add_argument("name")
    u = verbs.add_parser("user", help="a user; the password is read from stdin")
    u.add_argument("--dealer", required=True)
    u.add_argument("--email", required=True)
    u.add_argument("--role", required=True, choices=tenancy.ROLES)
    u.add_argument("--customer")
    u.add_argument("--name")
    t = verbs.add_parser("token", help="an API token for a user (fbtool, scripts): printed once")
    t.add_argument("--email", required=True)
    t.add_argument("--label")
    t.add_argument("--days", type=int, help="expires after this many days (default: never)")
    g = verbs.add_parser("assign", help="put a box at a site")
    g.add_argument("box")
    g.add_argument("--dealer", required=True)
    g.add_argument("--customer")
    g.add_argument("--site")
    g.add_argument("--unclaim", action="store_true")
    r = verbs.add_parser("rule", help="a notification rule for a customer")
    r.add_argument("--dealer", required=True)
    r.add_argument("--customer", required=True)
    r.add_argument("--kind", required=True, choices=notify.KINDS)
    r.add_argument("--threshold", type=int)
    r.add_argument("--code")
    r.add_argument("--to", required=True)
    n = sub.add_parser("notify", help="check the notification rules and mail what is new")
    n.add_argument("--config", "-c", required=True, help="TOML configuration file (its [smtp] table)")
    n.add_argument("--every", type=float, help="repeat every this many seconds until interrupted")


def _password():
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\n")


def _one(conn, q, what):
    row = conn.execute(q).first()
    if row is None:
        raise AdminError("no such %s" % what)
    return row[0]


def _dealer(conn, name):
    return _one(conn, select(dealers.c.id).where(dealers.c.name == name), "dealer %r" % name)


def _customer(conn, dealer_id, name):
    return _one(conn, select(customers.c.id).where(customers.c.dealer_id == dealer_id, customers.c.name == name),
                "customer %r" % name)


def _site(conn, customer_id, name):
    return _one(conn, select(sites.c.id).where(sites.c.customer_id == customer_id, sites.c.name == name),
                "site %r" % name)


def run_admin(args):
    engine = db.make_engine(args.database, pool_size=1)
    db.upgrade(engine)
    actor = "cli:%s" % (os.environ.get("USER") or os.environ.get("LOGNAME") or "root")
    try:
        with engine.begin() as conn:
            return _verb(conn, args, actor)
    except (accounts.AccountError, tenancy.TenancyError, notify.NotifyError) as e:
        raise AdminError(str(e))
    finally:
        engine.dispose()


def _verb(conn, args, actor):  # noqa: C901 - one branch per verb
    v = args.verb
    if v == "bootstrap":
        if conn.execute(select(users.c.id).limit(1)).first() is not None:
            raise AdminError("there are users already: add more with `admin ... user`")
        dealer = tenancy.add_dealer(conn, args.dealer, owns_keys=True)
        uid = accounts.add_user(conn, dealer, args.email, _password(), "administrator")
        audit(conn, actor, "user", args.email, {"role": "administrator", "bootstrap": True}, dealer_id=dealer)
        print("dealer %d %r, administrator %d %s" % (dealer, args.dealer, uid, args.email))
        return 0
    dealer = _dealer(conn, args.dealer) if getattr(args, "dealer", None) else None
    if v == "customer":
        cid = tenancy.add_customer(conn, dealer, args.name)
        audit(conn, actor, "config", "customer:%d" % cid, {"name": args.name}, dealer_id=dealer)
        print("customer %d" % cid)
    elif v == "site":
        sid = tenancy.add_site(conn, _customer(conn, dealer, args.customer), args.name)
        audit(conn, actor, "config", "site:%d" % sid, {"name": args.name, "customer": args.customer},
              dealer_id=dealer)
        print("site %d" % sid)
    elif v == "user":
        cust = _customer(conn, dealer, args.customer) if args.customer else None
        uid = accounts.add_user(conn, dealer, args.email, _password(), args.role, cust, args.name)
        audit(conn, actor, "user", args.email, {"role": args.role, "customer": cust}, dealer_id=dealer)
        print("user %d" % uid)
    elif v == "token":
        row = conn.execute(select(users.c.id, users.c.dealer_id).where(users.c.email == args.email.lower())).first()
        if row is None:
            raise AdminError("no such user %r" % args.email)
        secret = accounts.issue(conn, row[0], "token", args.label, args.days * 86400 if args.days else None)
        audit(conn, actor, "token", args.email, {"label": args.label, "days": args.days}, dealer_id=row[1])
        print(secret)
    elif v == "assign":
        site = None
        if not args.unclaim:
            if not (args.customer and args.site):
                raise AdminError("assign needs --customer and --site (or --unclaim)")
            site = _site(conn, _customer(conn, dealer, args.customer), args.site)
        tenancy.assign_box(conn, args.box, site)
        audit(conn, actor, "claim", "box:%s" % args.box, {"site": site}, dealer_id=dealer)
        print("box %s %s" % (args.box, "unclaimed" if site is None else "at site %d" % site))
    elif v == "rule":
        rid = notify.add_rule(conn, _customer(conn, dealer, args.customer), args.kind, args.to, args.threshold,
                              args.code)
        audit(conn, actor, "rule", "rule:%d" % rid, {"kind": args.kind, "threshold": args.threshold,
                                                     "code": args.code, "to": args.to}, dealer_id=dealer)
        print("rule %d" % rid)
    return 0


def run_notify(args, cfg):
    import time
    from cloud.store import Store
    store = Store(cfg.database, migrate=True, pool_size=1)
    smtp = notify.Smtp.from_dict(cfg.smtp)
    try:
        while True:
            n = notify.run_once(store.engine, smtp)
            print("%d mail(s) sent" % n)
            if not args.every:
                return 0
            time.sleep(args.every)
    except KeyboardInterrupt:
        return 0
    finally:
        store.close()
