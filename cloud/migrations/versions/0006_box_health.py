"""The boxes' own failure counters ("h" of their uploads), per box (cloud/tenancy.py box_health).

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "box_health",
        sa.Column("box", sa.Text, primary_key=True),
        sa.Column("counters", sa.Text, nullable=False),
        sa.Column("reported", sa.Float),
    )


def downgrade():
    op.drop_table("box_health")
