"""A Python the user `nobody` can run, with this venv's packages (snmpsim) importable.

snmpsim refuses to run as root, so the tests and the site start it as nobody. When this
checkout or its interpreter lives under a directory nobody cannot enter (a 0700 home such
as /root holding pyenv, a `mktemp -d`), nobody cannot even exec the venv's python. Then
the interpreter, its shared library, the standard library and the venv's packages are
copied once per process into a world-readable temporary directory (removed at exit),
and that copy runs with PYTHONHOME pointing at it.
"""
import atexit
import os
import shutil
import stat
import sys
import sysconfig
import tempfile

# parts of the standard library no agent imports: not worth copying
_SKIP = ("test", "site-packages", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data")
_copy = None   # (python, env) once built


def readable_by_others(path):
    """True when users other than the owner can reach path (x on every parent) and read it."""
    try:
        path = os.path.realpath(path)
        parent = os.path.dirname(path)
        while True:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
            if parent == os.path.dirname(parent):
                break
            parent = os.path.dirname(parent)
        mode = os.stat(path).st_mode
        return bool(mode & stat.S_IROTH) and (not stat.S_ISDIR(mode) or bool(mode & stat.S_IXOTH))
    except OSError:
        return False


def _runtime_paths():
    paths = sysconfig.get_paths()
    out = [sys.executable, paths["stdlib"], paths["platstdlib"], paths["purelib"], paths["platlib"]]
    lib = _libpython()
    if lib:
        out.append(lib)
    return out


def _libpython():
    """The interpreter's shared library, when it is linked against one."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    name = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    path = os.path.join(sysconfig.get_config_var("LIBDIR") or "", name or "")
    return path if name and os.path.exists(path) else None


def python_for_nobody():
    """(interpreter path, extra environment) that nobody can run with this venv's packages."""
    global _copy
    if all(readable_by_others(p) for p in _runtime_paths()):
        return sys.executable, {}
    if _copy is None:
        _copy = _build_copy()
    return _copy


def _build_copy():
    top = tempfile.mkdtemp(prefix="fleetbox-python-")
    atexit.register(shutil.rmtree, top, True)
    os.chmod(top, 0o755)
    version = "python%d.%d" % sys.version_info[:2]
    lib = os.path.join(top, "lib")
    os.makedirs(os.path.join(top, "bin"))
    python = os.path.join(top, "bin", "python3")
    shutil.copy2(os.path.realpath(sys.executable), python)
    libpython = _libpython()
    os.makedirs(lib)
    if libpython:
        shutil.copy2(os.path.realpath(libpython), os.path.join(lib, os.path.basename(libpython)))
    stdlib = sysconfig.get_paths()["stdlib"]
    shutil.copytree(stdlib, os.path.join(lib, version), ignore=lambda d, names: [
        n for n in names if d == stdlib and (n in _SKIP or n.startswith("config-"))])
    seen = set()
    for key in ("purelib", "platlib"):
        src = sysconfig.get_paths()[key]
        if src not in seen and os.path.isdir(src):
            seen.add(src)
            shutil.copytree(src, os.path.join(lib, version, "site-packages"), dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("pip", "pip-*", "setuptools", "_distutils_hack"))
    for d, _dirs, files in os.walk(top):
        os.chmod(d, 0o755)
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o444)
    os.chmod(python, 0o755)
    env = {"PYTHONHOME": top, "LD_LIBRARY_PATH": lib, "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return python, env
