"""The update service's tables: published images, rollouts, each box's progress (cloud/updates.py).

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "update_images",
        sa.Column("digest", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("board", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("security_counter", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content_key", sa.Text, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("published", sa.Float),
    )
    op.create_table(
        "update_rollouts",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("image", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("percent", sa.Integer),
        sa.Column("boxes", sa.Text),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("max_failure_rate", sa.Float, nullable=False),
        sa.Column("min_reports", sa.Integer, nullable=False),
        sa.Column("created", sa.Float),
        sa.Column("halted_reason", sa.Text),
    )
    op.create_table(
        "update_progress",
        sa.Column("rollout", sa.BigInteger, nullable=False),
        sa.Column("box", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("detail", sa.Text),
        sa.Column("updated", sa.Float),
        sa.PrimaryKeyConstraint("rollout", "box", name="update_progress_pkey"),
    )


def downgrade():
    op.drop_table("update_progress")
    op.drop_table("update_rollouts")
    op.drop_table("update_images")
