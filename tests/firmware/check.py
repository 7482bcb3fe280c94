"""Tiny assertion helpers that work on both MicroPython and CPython (no pytest there)."""
import os
from binascii import hexlify

# This process's own: a module's CPython run and its MicroPython run (make test runs two test
# files at once) may overlap, and so may two checkouts' runs; a fixed /tmp path would be shared.
RUN = hexlify(os.urandom(4)).decode()


def tmp(name):
    """A path under /tmp for `name` that no other test process uses."""
    return "/tmp/fbt-%s-%s" % (RUN, name)


def raises(exc, fn, *args, **kw):
    """Call fn and return the exception of type exc it raised; fail if it raised none."""
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised by %s" % (exc.__name__, getattr(fn, "__name__", fn)))


class LogCapture:
    """`with LogCapture(level) as log:` collects the box's log lines (fleetbox.port.log) in
    log.lines, from `level` up; the sink and threshold are restored afterwards."""

    def __init__(self, level=None):
        self.level = level
        self.lines = []

    def __enter__(self):
        from fleetbox import port
        self._old = port.log_level()
        port.set_log_sink(self.lines.append)
        if self.level is not None:
            port.set_log_level(self.level)
        return self

    def __exit__(self, *exc):
        from fleetbox import port
        port.set_log_sink(None)
        port.set_log_level(self._old)
        return False

    def text(self):
        return "\n".join(self.lines)


def rmtree(d):
    """Remove d and everything below it; nothing there is no error (os only: MicroPython has no shutil)."""
    try:
        names = os.listdir(d)
    except OSError:
        return
    for n in names:
        p = d + "/" + n
        try:
            os.remove(p)
        except OSError:
            rmtree(p)
    os.rmdir(d)


def fresh_dir(d):
    """d, empty."""
    rmtree(d)
    os.mkdir(d)
    return d
