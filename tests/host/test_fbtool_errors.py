"""fbtool's one error tree: a user's mistake is one line `fbtool: error: ...` and a non-zero
exit, a traceback only with --debug; library code never raises SystemExit."""
import ast
import json
import os
import shutil
import subprocess
import sys

import pytest

from fbtool import flash, paths
from fbtool.errors import FatalError

BIN = os.path.dirname(sys.executable)
FBTOOL = os.path.join(BIN, "fbtool")
BROKEN_YAML = "vendor: Broken\nenterprises: [1, 2\nserial: x\n"   # an unclosed flow sequence


def fbtool(*args, cwd=None):
    return subprocess.run([FBTOOL] + list(args), capture_output=True, text=True, timeout=300, cwd=cwd)


def _one_error_line(r):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith("fbtool: error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.fixture
def tree_with_broken_profile(tmp_path):
    """A copy of the parts fbtool builds from, one profile YAML broken (the repository's own
    profiles stay untouched)."""
    for part in ("firmware", "board", "host-tools", "profiles"):
        shutil.copytree(os.path.join(paths.ROOT, part), tmp_path / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "profiles" / "zz-broken.yaml").write_text(BROKEN_YAML)
    return tmp_path


def _copied_fbtool(tree, *args):
    code = "import sys; sys.path.insert(0, %r); from fbtool import cli; sys.exit(cli.main())" % str(
        tree / "host-tools")
    return subprocess.run([sys.executable, "-c", code] + list(args), capture_output=True, text=True,
                          timeout=300, cwd=str(tree))


def test_build_with_a_broken_profile_yaml_prints_one_line(tree_with_broken_profile):
    tree = tree_with_broken_profile
    r = _copied_fbtool(tree, "build", "-o", str(tree / "fw.fbi"))
    line = _one_error_line(r)
    # the file, the line and column of the mistake, what is wrong, how to go on
    assert "profiles/zz-broken.yaml:3:7: expected ',' or ']'" in line, line
    assert "fix the YAML" in line
    assert not (tree / "fw.fbi").exists()


def test_debug_shows_the_traceback_too(tree_with_broken_profile):
    tree = tree_with_broken_profile
    r = _copied_fbtool(tree, "build", "--debug", "-o", str(tree / "fw.fbi"))
    assert r.returncode == 2
    assert "Traceback (most recent call last)" in r.stderr and "ProfileSourceError" in r.stderr
    assert r.stderr.strip().split("\n")[-1].startswith("fbtool: error: profiles/zz-broken.yaml:3:7:")
    r = _copied_fbtool(tree, "--debug", "build", "-o", str(tree / "fw.fbi"))   # before the command too
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_profiles_compile_names_file_and_line(tmp_path):
    src = tmp_path / "profiles"
    src.mkdir()
    (src / "a.yaml").write_text("vendor: A\n  enterprises: 3\n")
    line = _one_error_line(fbtool("profiles", "compile", "--source", str(src), "-o", str(tmp_path / "p.json")))
    assert "a.yaml:2:14: mapping values are not allowed here" in line, line
    (src / "a.yaml").write_text("vendor: A\nenterprises: [3]\nbogus: 1\n")
    line = _one_error_line(fbtool("profiles", "compile", "--source", str(src), "-o", str(tmp_path / "p.json")))
    assert "a.yaml: unknown keys ['bogus']" in line, line


def test_unknown_board_is_an_error_not_an_exit():
    with pytest.raises(FatalError) as e:
        paths.board_dir("no-such-board")
    assert "no-such-board" in str(e.value) and "sim" in e.value.hint
    with pytest.raises(FatalError):
        flash.load_board("no-such-board")
    line = _one_error_line(fbtool("build", "--board", "no-such-board", "-o", "/nonexistent/fw.fbi"))
    here = os.path.join(paths.ROOT, "board")
    boards = ", ".join(sorted(d for d in os.listdir(here) if os.path.isfile(os.path.join(here, d, "board.yaml"))))
    assert "unknown board 'no-such-board'" in line and "boards: " + boards in line, line


def test_files_that_do_not_fit_a_partition(tmp_path):
    with pytest.raises(flash.FlashError) as e:
        flash.lfs_partition(4 * 4096, 4096, {"big.bin": b"x" * 100000})
    assert isinstance(e.value, FatalError) and "do not fit a 16384-byte partition" in str(e.value)


def test_broken_manifest_and_argument_errors_are_one_line(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text("{not json")
    line = _one_error_line(fbtool("identity", "T-9", "-o", str(tmp_path / "id.json"), "--manifest", str(manifest)))
    assert "is not a manifest" in line
    line = _one_error_line(fbtool("scan", "127.0.0.1", "--web-port", "80=http"))
    assert "--web-port wants PROFILE_PORT=PORT, got '80=http'" in line
    line = _one_error_line(fbtool("flash", "--raw", str(tmp_path / "f.bin"), "--image", str(tmp_path / "none.fbi")))
    assert "cannot read image" in line


def test_a_missing_file_is_named(tmp_path):
    out = tmp_path / "not-a-dir"
    out.write_text("")
    line = _one_error_line(fbtool("profiles", "compile", "-o", str(out / "p.json")))
    assert "not-a-dir" in line


def _exits(tree):
    """(line, what) of every `raise SystemExit` and `sys.exit(...)` outside `if __name__ == "__main__":`."""
    main_blocks = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "__main__" in ast.dump(node.test):
            main_blocks.update(id(n) for b in node.body for n in ast.walk(b))
    found = []
    for node in ast.walk(tree):
        if id(node) in main_blocks:
            continue
        if isinstance(node, ast.Raise) and node.exc is not None and "SystemExit" in ast.dump(node.exc):
            found.append((node.lineno, "raise SystemExit"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "exit" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "sys":
            found.append((node.lineno, "sys.exit"))
    return found


# The sim board's ROM is the program itself (the simulated hardware): it alone ends the process.
PROGRAMS = {os.path.join("board", "sim", "rom.py")}


def test_no_library_code_raises_system_exit():
    offenders = []
    for top in ("host-tools", "firmware", "board"):
        for d, _, files in os.walk(os.path.join(paths.ROOT, top)):
            for name in files:
                path = os.path.join(d, name)
                rel = os.path.relpath(path, paths.ROOT)
                if not name.endswith(".py") or rel in PROGRAMS:
                    continue
                with open(path) as f:
                    tree = ast.parse(f.read(), rel)
                offenders += ["%s:%d %s" % (rel, line, what) for line, what in _exits(tree)]
    assert offenders == []
    # and the walk sees what it must: the ROM's exits, cli's `sys.exit(main())` under __main__ only
    with open(os.path.join(paths.ROOT, "board", "sim", "rom.py")) as f:
        assert len(_exits(ast.parse(f.read()))) >= 2
    with open(os.path.join(paths.ROOT, "host-tools", "fbtool", "cli.py")) as f:
        src = f.read()
    assert "sys.exit(main())" in src and _exits(ast.parse(src)) == []
    assert _exits(ast.parse("def f():\n    raise SystemExit(3)\n")) == [(2, "raise SystemExit")]


def test_box_still_reports_a_bad_config_with_exit_status_78(tmp_path):
    """The app returns EX_CONFIG instead of raising SystemExit; the ROM exits with it."""
    fw = tmp_path / "fw.fbi"
    assert fbtool("build", "-o", str(fw)).returncode == 0
    ident = tmp_path / "id.json"
    assert fbtool("identity", "T-3", "-o", str(ident)).returncode == 0
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"targets": ["127.0.0.1"], "log_level": "loud"}))
    img = tmp_path / "flash.img"
    assert fbtool("flash", "--sim", str(img), "--image", str(fw), "--identity", str(ident),
                  "--config", str(cfg)).returncode == 0
    r = subprocess.run([paths.micropython(), os.path.join(paths.ROOT, "board", "sim", "rom.py"), str(img)],
                       capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert r.returncode == 78, r.stdout + r.stderr
    assert "E main: cannot start: log_level must be one of debug, info, warn, error, off" in r.stdout, r.stdout
    assert any(line.startswith("I loader: starting ") for line in r.stdout.splitlines()), r.stdout


def test_every_fbtool_exception_is_a_fatal_error():
    import importlib
    pkg = os.path.join(paths.ROOT, "host-tools", "fbtool")
    seen = set()
    for name in sorted(os.listdir(pkg)):
        if not name.endswith(".py") or name in ("__init__.py", "mp_scan.py"):   # mp_scan runs on MicroPython
            continue
        mod = importlib.import_module("fbtool." + name[:-3])
        for attr, obj in vars(mod).items():
            if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == mod.__name__:
                assert issubclass(obj, FatalError), "%s.%s is not a FatalError" % (mod.__name__, attr)
                seen.add(attr)
    assert {"ImageError", "FlashError", "ProfileSourceError", "CaptureError", "ScanError"} <= seen, seen
