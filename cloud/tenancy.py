"""Tenants: dealer -> customer -> site -> box, the accounts that belong to them, and who sees what.

A box the ingest has never seen claimed has no `box_sites` row: it belongs to nobody yet,
and only administrators of the dealer that owns the service's device keys
(`dealers.owns_keys`) see it. Claiming (cloud/provision.py) calls assign_box().
The tables live on cloud.schema's metadata so one comparison checks every migration.
"""
import json
import time

from sqlalchemy import (Boolean, Column, Float, ForeignKey, Index, Integer, Text, Table, UniqueConstraint, select)

from cloud.schema import RowId, boxes, metadata

ROLES = ("administrator", "manager", "technician", "analyst", "customer")

dealers = Table(
    "dealers", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    Column("owns_keys", Boolean, nullable=False, server_default="0"),
)

customers = Table(
    "customers", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("dealer_id", Integer, ForeignKey("dealers.id"), nullable=False),
    Column("name", Text, nullable=False),
    UniqueConstraint("dealer_id", "name", name="customers_dealer_name"),
)

sites = Table(
    "sites", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("name", Text, nullable=False),
    UniqueConstraint("customer_id", "name", name="sites_customer_name"),
)

# One row per claimed box. firmware and state are written by whoever learns them (updates,
# provisioning); the dashboard shows them.
box_sites = Table(
    "box_sites", metadata,
    Column("box", Text, primary_key=True),
    Column("site_id", Integer, ForeignKey("sites.id"), nullable=False),
    Column("assigned", Float),
    Column("firmware", Text),
    Column("state", Text),
    Index("box_sites_site", "site_id"),
)

# The box's own troubles: its failed cycles by stage since it booted ("h" of its uploads,
# docs/payload.md), as the newest upload that carried them said; the dashboard shows them.
box_health = Table(
    "box_health", metadata,
    Column("box", Text, primary_key=True),
    Column("counters", Text, nullable=False),     # JSON {stage: count}
    Column("reported", Float),
)
HEALTH_STAGES_MAX = 32      # stages kept per box: "h" is the box's word, bounded here all the same

users = Table(
    "users", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("email", Text, nullable=False, unique=True),
    Column("name", Text),
    Column("password", Text, nullable=False),     # cloud.accounts.hash_password
    Column("role", Text, nullable=False),
    Column("dealer_id", Integer, ForeignKey("dealers.id"), nullable=False),
    Column("customer_id", Integer, ForeignKey("customers.id")),   # role customer only
    Column("disabled", Boolean, nullable=False, server_default="0"),
    Column("created", Float),
)

# Sessions (the page's cookie) and API tokens (bearer): only a SHA-256 of the secret is stored.
credentials = Table(
    "credentials", metadata,
    Column("digest", Text, primary_key=True),
    Column("kind", Text, nullable=False),            # session | token
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("label", Text),
    Column("created", Float, nullable=False),
    Column("expires", Float),
    Column("last_used", Float),
    Index("credentials_user", "user_id"),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("dealer_id", Integer),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text),
    Column("detail", Text),
    Index("audit_log_dealer_id", "dealer_id", "id"),
)

notify_rules = Table(
    "notify_rules", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("kind", Text, nullable=False),       # toner | alert | silent
    Column("threshold", Integer),               # toner: percent; silent: hours
    Column("code", Text),                       # alert: the alert code
    Column("recipients", Text, nullable=False),  # comma-separated addresses
    Column("enabled", Boolean, nullable=False, server_default="1"),
)

# What each rule has already said: one mail per condition until it clears.
notify_sent = Table(
    "notify_sent", metadata,
    Column("rule_id", Integer, ForeignKey("notify_rules.id"), nullable=False),
    Column("subject", Text, nullable=False),     # box or box/device the condition is about
    Column("at", Float, nullable=False),
    UniqueConstraint("rule_id", "subject", name="notify_sent_rule_subject"),
)


class TenancyError(Exception):
    pass


def _insert_id(conn, table, **values):
    return conn.execute(table.insert().values(**values).returning(table.c.id)).scalar_one()


def add_dealer(conn, name, owns_keys=False):
    return _insert_id(conn, dealers, name=name, owns_keys=bool(owns_keys))


def add_customer(conn, dealer_id, name):
    return _insert_id(conn, customers, dealer_id=dealer_id, name=name)


def add_site(conn, customer_id, name):
    return _insert_id(conn, sites, customer_id=customer_id, name=name)


def assign_box(conn, device_id, site_id):
    """Put a box (its device id, the envelope's device_id) at a site, or move it; site_id None
    takes it back to unclaimed. Call inside the claiming transaction, then audit() it."""
    if site_id is None:
        conn.execute(box_sites.delete().where(box_sites.c.box == device_id))
        return
    if conn.execute(select(sites.c.id).where(sites.c.id == site_id)).first() is None:
        raise TenancyError("no site %r" % site_id)
    done = conn.execute(box_sites.update().where(box_sites.c.box == device_id)
                        .values(site_id=site_id, assigned=time.time())).rowcount
    if not done:
        conn.execute(box_sites.insert().values(box=device_id, site_id=site_id, assigned=time.time(),
                                               state="claimed"))


def set_box_info(conn, device_id, firmware=None, state=None):
    """Record a claimed box's firmware version or provisioning state for the dashboard."""
    values = {k: v for k, v in (("firmware", firmware), ("state", state)) if v is not None}
    if values:
        conn.execute(box_sites.update().where(box_sites.c.box == device_id).values(**values))


def note_box_health(conn, device_id, counters, now=None):
    """Keep the failure counters an upload carried ("h"); anything but a small map of stage names
    to counts is ignored (the field is informative, the upload is stored all the same)."""
    if not isinstance(counters, dict) or not 0 < len(counters) <= HEALTH_STAGES_MAX or not all(
            isinstance(k, str) and 0 < len(k) <= 32 and isinstance(v, int) and not isinstance(v, bool)
            and 0 <= v < 1 << 53 for k, v in counters.items()):
        return False
    values = {"counters": json.dumps(counters, sort_keys=True), "reported": time.time() if now is None else now}
    if not conn.execute(box_health.update().where(box_health.c.box == device_id).values(**values)).rowcount:
        conn.execute(box_health.insert().values(box=device_id, **values))
    return True


def box_health_of(conn, box_ids):
    """{box: {"counters": {stage: count}, "reported": time}} for those of box_ids that reported any."""
    q = select(box_health.c.box, box_health.c.counters, box_health.c.reported) \
        .where(box_health.c.box.in_(list(box_ids)))
    return {b: {"counters": json.loads(c), "reported": r} for b, c, r in conn.execute(q)}


def visible_boxes(user):
    """A SELECT of the box ids `user` (a cloud.accounts.User) may read.

    Dealer staff: every box at their dealer's sites; administrators also the unclaimed boxes
    when their dealer owns the device keys. A customer's user: its customer's boxes only."""
    placed = select(box_sites.c.box).join(sites, sites.c.id == box_sites.c.site_id) \
        .join(customers, customers.c.id == sites.c.customer_id)
    if user.role == "customer":
        return placed.where(customers.c.id == user.customer_id)
    placed = placed.where(customers.c.dealer_id == user.dealer_id)
    if user.role != "administrator" or not user.owns_keys:
        return placed
    unclaimed = select(boxes.c.box).outerjoin(box_sites, box_sites.c.box == boxes.c.box) \
        .where(box_sites.c.box.is_(None))
    return placed.union(unclaimed)


def visible_customers(user):
    q = select(customers.c.id).where(customers.c.dealer_id == user.dealer_id)
    if user.role == "customer":
        q = q.where(customers.c.id == user.customer_id)
    return q


def box_places(conn, box_ids):
    """{box: {"site", "customer", "firmware", "state"}} for the claimed ones of box_ids."""
    q = select(box_sites.c.box, sites.c.name, customers.c.name, box_sites.c.firmware, box_sites.c.state) \
        .join(sites, sites.c.id == box_sites.c.site_id).join(customers, customers.c.id == sites.c.customer_id) \
        .where(box_sites.c.box.in_(list(box_ids)))
    return {b: {"site": s, "customer": c, "firmware": f, "state": st} for b, s, c, f, st in conn.execute(q)}

