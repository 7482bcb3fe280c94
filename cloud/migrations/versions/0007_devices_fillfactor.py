"""Room on each page of `devices` for its rows' next versions (PostgreSQL only).

Every upload rewrites its devices' rows (the newest record). With full pages each new version
lands on another page and every index of the table gets an entry for it; with half the page
free PostgreSQL keeps the version on the same page and the indexes untouched (a HOT update: no
indexed column changes). In bench/cloud/store_upload.py --statements the devices' upsert went
from 0.26 to 0.18 ms per 8-record upload. Existing pages keep their rows until they are
rewritten; new and updated rows follow the setting at once.

Revision ID: 0007
Revises: 0006
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FILLFACTOR = 50


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE devices SET (fillfactor = %d)" % FILLFACTOR)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE devices RESET (fillfactor)")
