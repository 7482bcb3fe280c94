"""Users, their passwords, sessions (the page's cookie) and API tokens (bearer), and what each role may do.

Passwords: scrypt from the standard library (memory-hard; no extra dependency), stored as
`scrypt$N$r$p$salt$hash`. Sessions and tokens are random secrets handed to the user once;
the database keeps only their SHA-256, so a copy of it lets nobody sign in.
"""
import base64
import hashlib
import hmac
import secrets
import time

from sqlalchemy import select

from cloud.tenancy import ROLES, credentials, customers, dealers, users

SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1       # 16 MiB, ~50 ms a check
SESSION_TTL_S = 12 * 3600
TOUCH_EVERY_S = 60           # last_used is written at most this often per credential
PREFIX = {"session": "fbs_", "token": "fbt_"}

# What each role may do beyond reading its own tenants' data (every role reads).
PERMISSIONS = {
    "administrator": {"export", "audit", "users", "tokens", "rules", "claim", "configure", "revoke", "rollout",
                      "unclaimed"},
    "manager": {"export", "audit", "tokens", "rules", "claim", "configure", "revoke", "rollout"},
    "technician": {"tokens", "claim", "configure"},
    "analyst": {"export", "tokens"},
    "customer": {"export", "tokens"},
}


class AccountError(Exception):
    pass


class User:
    __slots__ = ("id", "email", "name", "role", "dealer_id", "customer_id", "owns_keys")

    def __init__(self, id, email, name, role, dealer_id, customer_id, owns_keys):
        self.id, self.email, self.name, self.role = id, email, name, role
        self.dealer_id, self.customer_id, self.owns_keys = dealer_id, customer_id, bool(owns_keys)

    def may(self, permission):
        return permission in PERMISSIONS[self.role]

    def __str__(self):
        return self.email


def hash_password(password):
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return "scrypt$%d$%d$%d$%s$%s" % (SCRYPT_N, SCRYPT_R, SCRYPT_P, b64(salt).decode(), b64(digest).decode())


def verify_password(password, stored):
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want), maxmem=1 << 26)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


# A hash to check against when the e-mail is unknown, so both failures take as long.
_NOBODY = hash_password(secrets.token_hex(8))


def add_user(conn, dealer_id, email, password, role, customer_id=None, name=None):
    if role not in ROLES:
        raise AccountError("role must be one of %s" % ", ".join(ROLES))
    if (role == "customer") != (customer_id is not None):
        raise AccountError("a customer's user names its customer, and only it")
    if customer_id is not None and conn.execute(select(customers.c.id).where(
            customers.c.id == customer_id, customers.c.dealer_id == dealer_id)).first() is None:
        raise AccountError("customer %r is not the dealer's" % customer_id)
    if len(password) < 8:
        raise AccountError("a password has at least 8 characters")
    return conn.execute(users.insert().values(
        email=email.strip().lower(), name=name, password=hash_password(password), role=role, dealer_id=dealer_id,
        customer_id=customer_id, created=time.time()).returning(users.c.id)).scalar_one()


_USER = select(users.c.id, users.c.email, users.c.name, users.c.role, users.c.dealer_id, users.c.customer_id,
               dealers.c.owns_keys).join(dealers, dealers.c.id == users.c.dealer_id)


def get_user(conn, user_id):
    row = conn.execute(_USER.where(users.c.id == user_id, users.c.disabled.is_(False))).first()
    return User(*row) if row else None


def sign_in(conn, email, password):
    """The user with this e-mail and password, or None."""
    row = conn.execute(select(users.c.id, users.c.password).where(
        users.c.email == email.strip().lower(), users.c.disabled.is_(False))).first()
    if row is None:
        verify_password(password, _NOBODY)
        return None
    return get_user(conn, row[0]) if verify_password(password, row[1]) else None


def dealer_of(conn, email):
    """The dealer of the user with this e-mail (None: no such user): failed sign-ins go to its audit log."""
    return conn.execute(select(users.c.dealer_id).where(users.c.email == email.strip().lower())).scalar()


def _digest(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def issue(conn, user_id, kind, label=None, ttl_s=None):
    """A new session or API token for the user: the secret, shown only now."""
    secret = PREFIX[kind] + secrets.token_urlsafe(32)
    now = time.time()
    if kind == "session" and ttl_s is None:
        ttl_s = SESSION_TTL_S
    conn.execute(credentials.insert().values(digest=_digest(secret), kind=kind, user_id=user_id, label=label,
                                             created=now, expires=now + ttl_s if ttl_s else None))
    return secret


def user_for(conn, secret, kind):
    """The live user a session or token secret belongs to, or None (unknown, expired, revoked, disabled)."""
    if not secret or not secret.startswith(PREFIX[kind]):
        return None
    digest = _digest(secret)
    row = conn.execute(select(credentials.c.user_id, credentials.c.expires, credentials.c.last_used).where(
        credentials.c.digest == digest, credentials.c.kind == kind)).first()
    now = time.time()
    if row is None or (row[1] is not None and row[1] < now):
        return None
    if row[2] is None or now - row[2] > TOUCH_EVERY_S:
        conn.execute(credentials.update().where(credentials.c.digest == digest).values(last_used=now))
    return get_user(conn, row[0])


def revoke(conn, secret):
    return conn.execute(credentials.delete().where(credentials.c.digest == _digest(secret))).rowcount > 0
