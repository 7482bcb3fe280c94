"""The audit log: who did what to which thing, kept per dealer.

    from cloud.audit import audit
    with store.engine.begin() as conn:
        ...                                   # the change itself
        audit(conn, user, "claim", "box:FBX-1", {"site": 3})

Call it on the connection of the change's own transaction, so the entry exists exactly when
the change does. actor: a cloud.accounts.User (its dealer is recorded) or a text such as
"box:FBX-1" or "system" (then pass dealer_id when known). action: one of ACTIONS' names, or a
new dotted one. detail: a dict (stored as JSON) or text.
"""
import json
import time

from sqlalchemy import select

from cloud.tenancy import audit_log

ACTIONS = ("sign-in", "sign-in-failed", "sign-out", "token", "user", "claim", "config", "rollout", "export",
           "rule")


def audit(conn, actor, action, target=None, detail=None, dealer_id=None):
    if hasattr(actor, "dealer_id"):
        dealer_id = actor.dealer_id if dealer_id is None else dealer_id
        actor = actor.email
    if detail is not None and not isinstance(detail, str):
        detail = json.dumps(detail, sort_keys=True, separators=(",", ":"))
    conn.execute(audit_log.insert().values(at=time.time(), dealer_id=dealer_id, actor=str(actor), action=action,
                                           target=target, detail=detail))


def entries(conn, dealer_id, limit=100, before=None):
    """A dealer's audit entries, newest first."""
    q = select(audit_log.c.id, audit_log.c.at, audit_log.c.actor, audit_log.c.action, audit_log.c.target,
               audit_log.c.detail).where(audit_log.c.dealer_id == dealer_id)
    if before is not None:
        q = q.where(audit_log.c.id < before)
    keys = ("id", "at", "actor", "action", "target", "detail")
    return [dict(zip(keys, r)) for r in conn.execute(q.order_by(audit_log.c.id.desc()).limit(limit))]
