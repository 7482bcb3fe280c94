"""Provisioning's tables (migration 0003_provisioning): boxes from the factory manifest, their
claims, configuration and keys, failed claim attempts (rate limit) and clone alerts."""
from sqlalchemy import BigInteger, Column, Float, Integer, Table, Text

from cloud.schema import RowId, metadata

provisioned = Table(
    "provisioned", metadata,
    Column("serial", Text, primary_key=True),
    Column("cert", Text, nullable=False),          # base64 DER, from the manufacturing manifest
    Column("spki", Text, nullable=False),          # hex SHA-256 of the certificate's key
    Column("claim_salt", Text, nullable=False),
    Column("claim_hash", Text, nullable=False),
    Column("state", Text, nullable=False, server_default="unclaimed"),   # unclaimed, claimed, revoked
    Column("dealer", Text),
    Column("customer", Text),
    Column("site", Text),
    Column("claimed_at", Float),
    Column("kid", Integer, nullable=False, server_default="0"),          # 0: no envelope key yet
    Column("env_key", Text),                       # hex; never leaves through the read API
    Column("config", Text),                        # JSON of the configuration in force
    Column("config_version", Integer, nullable=False, server_default="0"),
    Column("running_version", Integer, nullable=False, server_default="0"),
    Column("refused_version", Integer),
    Column("refused_reason", Text),
    Column("last_contact", Float),
    Column("quarantined", Integer, nullable=False, server_default="0"),
)

claim_failures = Table(
    "claim_failures", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("dealer", Text, nullable=False),
    Column("serial", Text, nullable=False),
    Column("at", Float, nullable=False),
)

clone_alerts = Table(
    "clone_alerts", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("serial", Text, nullable=False),
    Column("at", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("resolved", Text),                      # None while open; then "released" or "revoked"
)

quarantine = Table(
    "quarantine", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("serial", Text, nullable=False),
    Column("at", Float, nullable=False),
    Column("seq", BigInteger),
    Column("body", Text),                          # base64 of the envelope, kept until a person decides
)
