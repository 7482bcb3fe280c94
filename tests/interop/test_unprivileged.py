"""simulator.unprivileged: the user nobody gets a Python that runs snmpsim even when this
checkout or its interpreter sits under a directory nobody cannot enter (a 0700 home)."""
import os
import stat
import subprocess
import sys

import pytest

from simulator import unprivileged

IMPORT_SNMPSIM = "import snmpsim.commands.responder, pysnmp, sys; print(sys.version_info[:2])"


def _as_nobody(python, env):
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", python, "-c",
                           IMPORT_SNMPSIM], capture_output=True, text=True, env=dict(os.environ, **env), cwd="/",
                          timeout=120)


def test_readable_by_others_follows_every_parent(tmp_path):
    d = tmp_path / "private"
    d.mkdir()
    f = d / "x"
    f.write_text("x")
    os.chmod(f, 0o644)
    os.chmod(tmp_path, 0o755)
    os.chmod(d, 0o755)
    assert unprivileged.readable_by_others(str(f)) == all(
        os.stat(p).st_mode & stat.S_IXOTH for p in [str(tmp_path)] + [str(q) for q in tmp_path.parents])
    os.chmod(d, 0o700)
    assert not unprivileged.readable_by_others(str(f))


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to nobody needs root")
def test_nobody_runs_snmpsim_from_the_copy():
    python, env = unprivileged._build_copy()      # the copy, even where this Python is readable
    assert not python.startswith(sys.prefix)
    r = _as_nobody(python, env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == str(tuple(sys.version_info[:2]))


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to nobody needs root")
def test_nobody_runs_what_python_for_nobody_gives():
    python, env = unprivileged.python_for_nobody()
    r = _as_nobody(python, env)
    assert r.returncode == 0, r.stderr[-2000:]
