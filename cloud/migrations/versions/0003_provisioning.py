"""Provisioning: boxes from the factory manifest, claims, configuration, claim failures, clone alerts.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "provisioned",
        sa.Column("serial", sa.Text, primary_key=True),
        sa.Column("cert", sa.Text, nullable=False),
        sa.Column("spki", sa.Text, nullable=False),
        sa.Column("claim_salt", sa.Text, nullable=False),
        sa.Column("claim_hash", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="unclaimed"),
        sa.Column("dealer", sa.Text),
        sa.Column("customer", sa.Text),
        sa.Column("site", sa.Text),
        sa.Column("claimed_at", sa.Float),
        sa.Column("kid", sa.Integer, nullable=False, server_default="0"),
        sa.Column("env_key", sa.Text),
        sa.Column("config", sa.Text),
        sa.Column("config_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("running_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("refused_version", sa.Integer),
        sa.Column("refused_reason", sa.Text),
        sa.Column("last_contact", sa.Float),
        sa.Column("quarantined", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "claim_failures",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("dealer", sa.Text, nullable=False),
        sa.Column("serial", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "clone_alerts",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("serial", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("resolved", sa.Text),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("serial", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("seq", sa.BigInteger),
        sa.Column("body", sa.Text),
    )


def downgrade():
    for table in ("quarantine", "clone_alerts", "claim_failures", "provisioned"):
        op.drop_table(table)
