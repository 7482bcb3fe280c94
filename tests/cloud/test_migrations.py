"""The schema comes from the migrations alone, on SQLite and on PostgreSQL, and matches cloud/schema.py."""
import subprocess
import sys

from sqlalchemy import inspect

from cloud import db
from cloud.schema import metadata
from cloud.store import Store


def columns(engine):
    insp = inspect(engine)
    return {t: sorted(c["name"] for c in insp.get_columns(t)) for t in insp.get_table_names()}


def test_migrations_build_the_schema_and_go_down_and_up_again(database):
    engine = db.make_engine(database)
    assert db.current(engine) is None
    db.upgrade(engine)
    assert db.current(engine) == db.head()
    want = {t.name: sorted(c.name for c in t.columns) for t in metadata.sorted_tables}
    assert columns(engine) == dict(want, alembic_version=["version_num"])
    insp = inspect(engine)
    assert insp.get_pk_constraint("uploads")["constrained_columns"] == ["box", "epoch", "upload"]
    assert {i["name"] for i in insp.get_indexes("readings")} == {"readings_box_device_id"}
    db.upgrade(engine)                  # a second run changes nothing
    assert db.current(engine) == db.head()
    db.downgrade(engine, "base")
    assert set(columns(engine)) == {"alembic_version"} and db.current(engine) is None
    db.upgrade(engine)
    assert set(columns(engine)) == set(want) | {"alembic_version"}
    engine.dispose()


def test_a_store_migrates_an_empty_database_and_keeps_data_across_reopening(database):
    s = Store(database)
    batch = {"scan": "full", "cycle": 100, "records": [{"serial": "S1", "ip": "10.0.0.1", "collected_at": 100,
                                                        "counters": {"total": 5}}], "seen": [], "base": None}
    assert s.store_upload("B1", 1, 1, batch, "liberty", 10) == (True, [])
    s.close()
    s = Store(database)
    assert s.device("B1", "S1")["counters"] == {"total": 5}
    assert s.boxes()[0]["last_seq"] == 1 and s.last_seq("B1") == 1
    s.close()


def test_migrate_and_check_commands(database):
    cmd = [sys.executable, "-m", "cloud"]
    r = subprocess.run(cmd + ["check", database], capture_output=True, text=True)
    assert r.returncode == 1 and "schema at None" in r.stdout
    r = subprocess.run(cmd + ["migrate", database], capture_output=True, text=True)
    assert r.returncode == 0 and "schema at {0} (newest {0})".format(db.head()) in r.stdout, r.stderr
    r = subprocess.run(cmd + ["check", database], capture_output=True, text=True)
    assert r.returncode == 0


def test_0002_adds_the_down_seq_to_boxes_that_exist(database):
    engine = db.make_engine(database)
    db.upgrade(engine, "0001")
    with engine.begin() as c:
        c.exec_driver_sql("INSERT INTO boxes (box, last_seq, epoch) VALUES ('B1', 7, 0)")
    db.upgrade(engine, "0002")
    engine.dispose()
    s = Store(database)
    assert s.down_seq("B1") == 0 and s.last_seq("B1") == 7
    assert [s.next_down_seq("B1"), s.next_down_seq("B1"), s.next_down_seq("B2")] == [1, 2, 1]
    s.close()
