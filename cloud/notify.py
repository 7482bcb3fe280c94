"""E-mail notifications: rules per customer, checked against the stored data, mailed through SMTP.

Rule kinds (table notify_rules, cloud/tenancy.py):
  toner   threshold N: a supply of a printer is under N %
  alert   code C: a printer reports alert (or error) code C
  silent  threshold N: a box has not been in contact for N hours

Each condition is mailed once (table notify_sent) and may be mailed again only after it
cleared. A run marks what it is about to send in one transaction and sends afterwards: a
mail that fails to go out is unmarked, so the next run tries it again; the database is
never held while SMTP talks. `fleetbox-cloud notify --config FILE` runs the checks (once,
or every --every seconds), and `fleetbox-cloud serve` does in its parent process when the
[smtp] table has `every_s`; any number of runs may overlap (the marks are unique).
"""
import json
import logging
import smtplib
import threading
import time
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cloud.logs import event
from cloud.readapi import open_alerts
from cloud.schema import boxes, devices
from cloud.tenancy import box_sites, customers, notify_rules, notify_sent, sites

log = logging.getLogger("fleetbox.cloud.notify")
KINDS = ("toner", "alert", "silent")


class NotifyError(Exception):
    pass


class Smtp:
    """Where mail goes: host, port, sender; starttls and a login when the relay wants them."""

    def __init__(self, host="127.0.0.1", port=25, sender="fleetbox@localhost", starttls=False, user=None,
                 password=None, timeout_s=20):
        self.host, self.port, self.sender = host, int(port), sender
        self.starttls, self.user, self.password, self.timeout_s = bool(starttls), user, password, float(timeout_s)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: v for k, v in (d or {}).items() if k in ("host", "port", "sender", "starttls", "user",
                                                                    "password", "timeout_s")})

    def send(self, msg):
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as s:
            if self.starttls:
                s.starttls()
            if self.user:
                s.login(self.user, self.password or "")
            s.send_message(msg)


def add_rule(conn, customer_id, kind, recipients, threshold=None, code=None):
    if kind not in KINDS:
        raise NotifyError("kind must be one of %s" % ", ".join(KINDS))
    if kind in ("toner", "silent") and (threshold is None or int(threshold) < 0):
        raise NotifyError("%s needs a threshold" % kind)
    if kind == "alert" and not code:
        raise NotifyError("alert needs a code")
    addrs = [a.strip() for a in (recipients.split(",") if isinstance(recipients, str) else recipients) if a.strip()]
    if not addrs or not all("@" in a for a in addrs):
        raise NotifyError("recipients: e-mail addresses")
    return conn.execute(notify_rules.insert().values(
        customer_id=customer_id, kind=kind, threshold=None if threshold is None else int(threshold), code=code,
        recipients=",".join(addrs)).returning(notify_rules.c.id)).scalar_one()


def _customer_devices(conn, customer_id):
    q = select(devices.c.box, devices.c.device, devices.c.record, sites.c.name) \
        .join(box_sites, box_sites.c.box == devices.c.box).join(sites, sites.c.id == box_sites.c.site_id) \
        .where(sites.c.customer_id == customer_id).order_by(devices.c.box, devices.c.device)
    for box, dev, rec, site in conn.execute(q):
        yield box, dev, json.loads(rec), site


def _label(rec, dev):
    return "%s %s (serial %s, %s)" % (rec.get("manufacturer") or "", rec.get("model") or "", rec.get("serial") or dev,
                                      rec.get("ip") or "?")


def findings(conn, rule, now):
    """{subject: line} of the conditions rule `rule` (a row) sees now."""
    out = {}
    if rule.kind == "toner":
        for box, dev, rec, site in _customer_devices(conn, rule.customer_id):
            low = [s for s in rec.get("supplies") or [] if isinstance(s.get("percent"), (int, float))
                   and s["percent"] < rule.threshold and (s.get("kind") in (None, "toner", "ink"))]
            if low:
                out["%s/%s" % (box, dev)] = "%s at %s: %s" % (_label(rec, dev), site, ", ".join(
                    "%s %d %%" % (s.get("description") or s.get("color") or "supply", s["percent"]) for s in low))
    elif rule.kind == "alert":
        for box, dev, rec, site in _customer_devices(conn, rule.customer_id):
            hit = [a for a in open_alerts(rec) if str(a.get("code")) == rule.code]
            if hit:
                out["%s/%s" % (box, dev)] = "%s at %s: %s" % (_label(rec, dev), site, "; ".join(
                    str(a.get("description") or a.get("code")) for a in hit))
    elif rule.kind == "silent":
        q = select(boxes.c.box, boxes.c.last_seen, sites.c.name).join(box_sites, box_sites.c.box == boxes.c.box) \
            .join(sites, sites.c.id == box_sites.c.site_id).where(sites.c.customer_id == rule.customer_id)
        for box, seen, site in conn.execute(q.order_by(boxes.c.box)):
            if seen is None or now - seen > rule.threshold * 3600:
                out[box] = "box %s at %s: last contact %s" % (box, site, time.strftime(
                    "%Y-%m-%d %H:%M UTC", time.gmtime(seen)) if seen else "never")
    return out


def _subject(rule, customer, n):
    what = {"toner": "%d printer(s) under %d %% toner" % (n, rule.threshold or 0),
            "alert": "%d printer(s) with alert %s" % (n, rule.code),
            "silent": "%d box(es) silent for over %d h" % (n, rule.threshold or 0)}[rule.kind]
    return "fleetbox: %s: %s" % (customer, what)


def plan(engine, now):
    """Mark the new conditions of every enabled rule, forget the cleared ones: [(rule, customer, {subject: line})]."""
    out = []
    with engine.begin() as conn:
        rules = conn.execute(select(notify_rules, customers.c.name.label("customer"))
                             .join(customers, customers.c.id == notify_rules.c.customer_id)
                             .where(notify_rules.c.enabled.is_(True)).order_by(notify_rules.c.id)).all()
        for rule in rules:
            now_seen = findings(conn, rule, now)
            sent = {r[0] for r in conn.execute(select(notify_sent.c.subject).where(notify_sent.c.rule_id == rule.id))}
            cleared = sent - set(now_seen)
            if cleared:
                conn.execute(notify_sent.delete().where(notify_sent.c.rule_id == rule.id,
                                                        notify_sent.c.subject.in_(cleared)))
            new = {s: line for s, line in now_seen.items() if s not in sent}
            if new:
                conn.execute(notify_sent.insert(), [{"rule_id": rule.id, "subject": s, "at": now} for s in new])
                out.append((rule, rule.customer, new))
    return out


def run_once(engine, smtp, now=None):
    """Check every rule and mail what is new; returns the number of mails sent."""
    now = time.time() if now is None else now
    try:
        todo = plan(engine, now)
    except IntegrityError:      # another run marked the same conditions first: it sends them
        return 0
    sent = 0
    for rule, customer, new in todo:
        msg = EmailMessage()
        msg["From"], msg["To"] = smtp.sender, ", ".join(rule.recipients.split(","))
        msg["Subject"] = _subject(rule, customer, len(new))
        msg.set_content("\n".join([new[s] for s in sorted(new)] + ["", "-- fleetbox, rule %d" % rule.id]))
        try:
            smtp.send(msg)
            sent += 1
            event(log, logging.INFO, "notified", "rule %d mailed %s: %d condition(s)", rule.id, msg["To"], len(new),
                  rule=rule.id, to=msg["To"], conditions=len(new))
        except (OSError, smtplib.SMTPException) as e:
            event(log, logging.ERROR, "notify-failed", "rule %d could not mail %s: %s", rule.id, msg["To"], e,
                  rule=rule.id, to=msg["To"], error=str(e))
            with engine.begin() as conn:
                conn.execute(notify_sent.delete().where(notify_sent.c.rule_id == rule.id,
                                                        notify_sent.c.subject.in_(list(new))))
    return sent


def start(database, settings, stopping):
    """Check the rules every settings["every_s"] seconds in a thread of this process until the
    threading.Event `stopping` is set: `fleetbox-cloud serve` does it when [smtp] has every_s."""
    from cloud.store import Store
    every, smtp = float(settings["every_s"]), Smtp.from_dict(settings)

    def loop():
        store = Store(database, migrate=False, pool_size=1)
        try:
            while True:
                try:
                    run_once(store.engine, smtp)
                except Exception:       # a database hiccup must not end the checks
                    log.exception("notification check failed", extra={"event": "notify-failed", "fields": {}})
                if stopping.wait(every):
                    return
        finally:
            store.close()

    t = threading.Thread(target=loop, name="notify", daemon=True)
    t.start()
    return t
