"""Tenants and accounts: dealers, customers, sites, boxes' sites, users, credentials, audit log,
notification rules (cloud/tenancy.py).

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "dealers",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("owns_keys", sa.Boolean, nullable=False, server_default="0"),
    )
    op.create_table(
        "customers",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("dealer_id", sa.Integer, sa.ForeignKey("dealers.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.UniqueConstraint("dealer_id", "name", name="customers_dealer_name"),
    )
    op.create_table(
        "sites",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.UniqueConstraint("customer_id", "name", name="sites_customer_name"),
    )
    op.create_table(
        "box_sites",
        sa.Column("box", sa.Text, primary_key=True),
        sa.Column("site_id", sa.Integer, sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("assigned", sa.Float),
        sa.Column("firmware", sa.Text),
        sa.Column("state", sa.Text),
    )
    op.create_index("box_sites_site", "box_sites", ["site_id"])
    op.create_table(
        "users",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("email", sa.Text, nullable=False, unique=True),
        sa.Column("name", sa.Text),
        sa.Column("password", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("dealer_id", sa.Integer, sa.ForeignKey("dealers.id"), nullable=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id")),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("created", sa.Float),
    )
    op.create_table(
        "credentials",
        sa.Column("digest", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("label", sa.Text),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("expires", sa.Float),
        sa.Column("last_used", sa.Float),
    )
    op.create_index("credentials_user", "credentials", ["user_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("dealer_id", sa.Integer),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text),
        sa.Column("detail", sa.Text),
    )
    op.create_index("audit_log_dealer_id", "audit_log", ["dealer_id", "id"])
    op.create_table(
        "notify_rules",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("threshold", sa.Integer),
        sa.Column("code", sa.Text),
        sa.Column("recipients", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default="1"),
    )
    op.create_table(
        "notify_sent",
        sa.Column("rule_id", sa.Integer, sa.ForeignKey("notify_rules.id"), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.UniqueConstraint("rule_id", "subject", name="notify_sent_rule_subject"),
    )


def downgrade():
    for table in ("notify_sent", "notify_rules", "audit_log", "credentials", "users", "box_sites", "sites",
                  "customers", "dealers"):
        op.drop_table(table)
