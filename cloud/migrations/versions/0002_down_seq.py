"""boxes.down_seq: the last sequence number sealed into an answer to the box (docs/downlink.md).

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("boxes", sa.Column("down_seq", sa.BigInteger, nullable=False, server_default="0"))


def downgrade():
    with op.batch_alter_table("boxes") as batch:
        batch.drop_column("down_seq")
