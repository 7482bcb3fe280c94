"""The cloud's tables (SQLAlchemy Core): one schema for SQLite and PostgreSQL.

Records are kept as JSON text so both backends hold them byte for byte alike. The
migrations in cloud/migrations create exactly these tables; a test compares the two.
"""
from sqlalchemy import (BigInteger, Column, Float, Index, Integer, LargeBinary, MetaData, PrimaryKeyConstraint, Table,
                        Text)

# SQLite only auto-numbers an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
RowId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

boxes = Table(
    "boxes", metadata,
    Column("box", Text, primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("last_seen", Float),
    Column("last_endpoint", Text),
    Column("epoch", Integer, nullable=False, server_default="0"),
    Column("down_seq", BigInteger, nullable=False, server_default="0"),   # last seq sealed to the box
)

uploads = Table(
    "uploads", metadata,
    Column("box", Text, nullable=False),
    Column("epoch", Integer, nullable=False, server_default="0"),
    Column("upload", BigInteger, nullable=False),
    Column("scan", Text),
    Column("cycle", BigInteger),
    Column("records", Integer),
    Column("endpoint", Text),
    Column("received", Float),
    Column("bytes", Integer),
    PrimaryKeyConstraint("box", "epoch", "upload", name="uploads_pkey"),
)

devices = Table(
    "devices", metadata,
    Column("box", Text, nullable=False),
    Column("device", Text, nullable=False),
    Column("num", Integer),
    Column("ip", Text),
    Column("manufacturer", Text),
    Column("model", Text),
    Column("serial", Text),
    Column("record", Text),
    Column("clock", Text),
    Column("updated", Float),
    PrimaryKeyConstraint("box", "device", name="devices_pkey"),
    Index("devices_box_num", "box", "num"),
    postgresql_with={"fillfactor": 50},     # room for HOT updates: migration 0007
)

readings = Table(
    "readings", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("box", Text, nullable=False),
    Column("device", Text, nullable=False),
    Column("collected_at", BigInteger),
    Column("cycle", BigInteger),
    Column("scan", Text),
    Column("total", BigInteger),
    Column("lowest_supply", Integer),
    Column("record", Text),
    Index("readings_box_device_id", "box", "device", "id"),
)

rejects = Table(
    "rejects", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("at", Float),
    Column("endpoint", Text),
    Column("reason", Text),
    Column("detail", Text),
)

# -- the update service (cloud/updates.py, migration 0005)
update_images = Table(
    "update_images", metadata,
    Column("digest", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("board", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("security_counter", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("content_key", Text, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("published", Float),
)

update_rollouts = Table(
    "update_rollouts", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("image", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("percent", Integer),
    Column("boxes", Text),
    Column("state", Text, nullable=False),
    Column("max_failure_rate", Float, nullable=False),
    Column("min_reports", Integer, nullable=False),
    Column("created", Float),
    Column("halted_reason", Text),
)

update_progress = Table(
    "update_progress", metadata,
    Column("rollout", BigInteger, nullable=False),
    Column("box", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("reason", Text),
    Column("detail", Text),
    Column("updated", Float),
    PrimaryKeyConstraint("rollout", "box", name="update_progress_pkey"),
)

# Provisioning registers its tables on this metadata (migration 0003_provisioning).
from cloud import provision_schema  # noqa: E402,F401
