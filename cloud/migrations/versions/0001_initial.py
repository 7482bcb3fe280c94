"""The store as simulator/store.py had it: boxes, uploads, devices, readings, rejects.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "boxes",
        sa.Column("box", sa.Text, primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("last_seen", sa.Float),
        sa.Column("last_endpoint", sa.Text),
        sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "uploads",
        sa.Column("box", sa.Text, nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
        sa.Column("upload", sa.BigInteger, nullable=False),
        sa.Column("scan", sa.Text),
        sa.Column("cycle", sa.BigInteger),
        sa.Column("records", sa.Integer),
        sa.Column("endpoint", sa.Text),
        sa.Column("received", sa.Float),
        sa.Column("bytes", sa.Integer),
        sa.PrimaryKeyConstraint("box", "epoch", "upload", name="uploads_pkey"),
    )
    op.create_table(
        "devices",
        sa.Column("box", sa.Text, nullable=False),
        sa.Column("device", sa.Text, nullable=False),
        sa.Column("num", sa.Integer),
        sa.Column("ip", sa.Text),
        sa.Column("manufacturer", sa.Text),
        sa.Column("model", sa.Text),
        sa.Column("serial", sa.Text),
        sa.Column("record", sa.Text),
        sa.Column("clock", sa.Text),
        sa.Column("updated", sa.Float),
        sa.PrimaryKeyConstraint("box", "device", name="devices_pkey"),
    )
    op.create_index("devices_box_num", "devices", ["box", "num"])
    op.create_table(
        "readings",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("box", sa.Text, nullable=False),
        sa.Column("device", sa.Text, nullable=False),
        sa.Column("collected_at", sa.BigInteger),
        sa.Column("cycle", sa.BigInteger),
        sa.Column("scan", sa.Text),
        sa.Column("total", sa.BigInteger),
        sa.Column("lowest_supply", sa.Integer),
        sa.Column("record", sa.Text),
    )
    op.create_index("readings_box_device_id", "readings", ["box", "device", "id"])
    op.create_table(
        "rejects",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float),
        sa.Column("endpoint", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("detail", sa.Text),
    )


def downgrade():
    for table in ("rejects", "readings", "devices", "uploads", "boxes"):
        op.drop_table(table)
