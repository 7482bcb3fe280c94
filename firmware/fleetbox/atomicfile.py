"""The firmware's one way to replace a file on flash: write a temporary file, then rename.

A rename is atomic on LittleFS and POSIX, so after a power cut at any instant the file
is either the old one or the new one, and at worst a `.tmp` is left behind (readers
that list a folder, like the spool, delete those).
"""
from fleetbox import port


def read_json(path):
    """The JSON object a file holds, or None when it is missing, unreadable or not an object
    (callers treat all three as "not there yet")."""
    import json
    try:
        with open(path) as f:
            v = json.load(f)
        return v if isinstance(v, dict) else None
    except (OSError, ValueError):
        return None


def remove_quietly(path):
    try:
        port.remove(path)
    except OSError:
        pass


def atomic_write(path, data, tmp=None, binary=None):
    """Replace the file at `path` with `data`, all or nothing across a power cut.

    `data`: bytes, str, or a callable that writes to the open file (a big content is
    streamed to flash, never built whole in a fragmented heap). `tmp`: the temporary
    name (default `path` + ".tmp"). `binary`: the file's mode for a callable (default:
    binary for bytes, text otherwise). Returns the bytes written. On any error (flash
    full, or the callable's own) the temporary file is removed and the error raised;
    `path` is untouched.
    """
    tmp = tmp or path + ".tmp"
    if binary is None:
        binary = isinstance(data, (bytes, bytearray))
    try:
        f = port.open_write(tmp, binary)
        try:
            if callable(data):
                data(f)
            else:
                f.write(data)
            size = f.tell()
        except BaseException:
            f.close()
            raise
        port.close_write(f, tmp)
        port.rename(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    return size
