"""A throwaway PostgreSQL cluster for tests and benchmarks: Debian's server binaries, a data and
socket directory of its own, run as an unprivileged user, listening on a unix socket only.

    with Cluster() as pg:            # initdb + start; stop and remove on exit
        url = pg.create_database("t1")

As root the server runs as `nobody` (PostgreSQL refuses to run as root); the directory is a
fresh mkdtemp chowned to that user, so it works wherever the checkout lives.
"""
import glob
import os
import pwd
import shutil
import subprocess
import tempfile

import psycopg

RUN_AS = "nobody"
SUPERUSER = "fleet"


def bindir():
    """The newest /usr/lib/postgresql/N/bin with initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


class ClusterError(Exception):
    pass


class Cluster:
    def __init__(self, settings=None):
        self.bin = bindir()
        if self.bin is None:
            raise ClusterError("PostgreSQL's server is not installed "
                               "(Debian package postgresql; `make deps` installs it)")
        self.settings = dict({"fsync": "on", "max_connections": "200", "shared_buffers": "128MB"}, **(settings or {}))
        self.dir = self.data = self.sock = None
        self.user = None

    def _run(self, *args, check=True):
        kw = {}
        if self.user:
            kw.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        r = subprocess.run(list(args), capture_output=True, text=True, cwd=self.dir, timeout=120,
                           env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}, **kw)
        if check and r.returncode != 0:
            raise ClusterError("%s failed (%d): %s" % (os.path.basename(args[0]), r.returncode,
                                                       (r.stderr or r.stdout).strip()[-2000:]))
        return r

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="fleetbox-pg-")
        if os.geteuid() == 0:
            self.user = pwd.getpwnam(RUN_AS)
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.dir, 0o700)
        self.data, self.sock = os.path.join(self.dir, "data"), self.dir
        try:
            self._run(os.path.join(self.bin, "initdb"), "-D", self.data, "-U", SUPERUSER, "--auth=trust",
                      "-E", "UTF8", "--no-instructions")
            opts = "-c listen_addresses='' -k %s %s" % (self.sock, " ".join(
                "-c %s=%s" % kv for kv in self.settings.items()))
            self._run(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-o", opts, "-l",
                      os.path.join(self.dir, "server.log"), "-w", "-t", "60", "start")
        except Exception:
            self.stop()
            raise
        return self

    def url(self, database="postgres"):
        return "postgresql+psycopg://%s@/%s?host=%s" % (SUPERUSER, database, self.sock)

    def connect(self, database="postgres"):
        return psycopg.connect(dbname=database, user=SUPERUSER, host=self.sock, autocommit=True)

    def create_database(self, name):
        with self.connect() as c:
            c.execute('DROP DATABASE IF EXISTS "%s"' % name)
            c.execute('CREATE DATABASE "%s"' % name)
        return self.url(name)

    def log(self):
        try:
            with open(os.path.join(self.dir, "server.log")) as f:
                return f.read()
        except OSError:
            return ""

    def postmaster_pid(self):
        """The server's process id (first line of postmaster.pid): benchmarks read its CPU."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def stop(self):
        if self.dir is None:
            return
        if self.data and os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._run(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop",
                      check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
