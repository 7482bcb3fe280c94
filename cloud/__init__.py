"""The fleet service the box talks to: ingest on liberty and rescue, the read API, storage.

Starlette on uvicorn, SQLAlchemy Core with Alembic migrations over SQLite (embedded default)
or PostgreSQL (production). docs/cloud.md describes how it runs.
"""
