"""The root of every error fbtool reports to its user (as esptool's FatalError).

Library code raises a FatalError (or a subclass) with a message that names the file and
what to do; `fbtool.cli.main()` is the one place that catches it and prints
`fbtool: error: MESSAGE`, with a traceback only under `--debug`. Errors that libraries
raise for what is really the user's mistake (a YAML typo, a missing file) are turned
into FatalErrors where they happen, so the message can say which file and line.
"""
import os


class FatalError(Exception):
    """message: one line; hint: how to fix it, when known; detail: more lines (a
    subprocess's output) shown with --debug. exit_code: fbtool's exit status for it."""

    exit_code = 2

    def __init__(self, message, hint=None, detail=None):
        Exception.__init__(self, message)
        self.hint = hint
        self.detail = detail

    def line(self):
        text = " ".join(str(self).split("\n"))
        return text + ("; " + self.hint if self.hint else "")


def yaml_problem(path, err):
    """`FILE:LINE:COLUMN: problem` of a yaml.YAMLError (PyYAML's marks count from 0)."""
    mark = getattr(err, "problem_mark", None)
    where = _show(path)
    if mark is not None:
        where += ":%d:%d" % (mark.line + 1, mark.column + 1)
    problem = getattr(err, "problem", None) or str(err).strip().split("\n")[0]
    context = getattr(err, "context", None)
    return "%s: %s%s" % (where, problem, " (%s)" % context if context else "")


def os_problem(err, doing="cannot read"):
    """`cannot read FILE: No such file or directory` of an OSError."""
    name = err.filename if err.filename is not None else "?"
    return "%s %s: %s" % (doing, _show(name), err.strerror or err)


def _show(path):
    """A path as the user would type it: relative to the working directory when inside it."""
    path = str(path)
    rel = os.path.relpath(path) if os.path.isabs(path) else path
    return path if rel.startswith("..") else rel
