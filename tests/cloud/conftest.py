import itertools

import pytest

from tests.cloud.pgcluster import Cluster

_dbs = itertools.count(1)


@pytest.fixture(scope="session")
def postgres():
    """One throwaway PostgreSQL cluster for the session, always stopped and removed after."""
    cluster = Cluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(postgres):
    """A fresh, empty database on the session's cluster."""
    return postgres.create_database("t%d" % next(_dbs))


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """The store's URL on each backend: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return "sqlite:///%s" % (tmp_path / "cloud.sqlite")
    return request.getfixturevalue("pg_url")
