"""One error tree: every exception class the firmware (and its boards' HAL) defines is a
FleetboxError, found by walking the modules, on CPython and on MicroPython."""
import os
import sys

for _p in list(sys.path):
    if _p.endswith("/firmware") and _p[:-8] + "/board" not in sys.path:
        sys.path.append(_p[:-8] + "/board")   # hal.py lives in board/, next to firmware/

import fleetbox  # noqa: E402
from fleetbox.errors import FleetboxError  # noqa: E402

# What existed when the tree was made: the walk must find at least these (no vacuous pass).
KNOWN = ("BERError", "ConfigError", "EnvelopeError", "WebError", "TargetError", "ProfileError",
         "HttpError", "PinError", "ProxyError", "SnmpError", "Timeout", "UsmError", "UplinkError")


def _firmware_dir():
    f = getattr(fleetbox, "__file__", None)
    if f:
        return f.rsplit("/", 1)[0]
    for p in sys.path:   # a runtime that gives packages no __file__
        if _exists(p + "/fleetbox/errors.py"):
            return p + "/fleetbox"
    raise AssertionError("fleetbox not found on sys.path")


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _builtin(cls):
    import builtins
    return getattr(builtins, cls.__name__, None) is cls


def _exception_classes(mod):
    out = []
    for name in dir(mod):
        obj = getattr(mod, name)
        if isinstance(obj, type) and issubclass(obj, BaseException) and not _builtin(obj):
            out.append((name, obj))
    return out


def _modules():
    names = sorted(n[:-3] for n in os.listdir(_firmware_dir()) if n.endswith(".py") and n != "__init__.py")
    mods = []
    for n in names:
        __import__("fleetbox." + n)
        mods.append(("fleetbox." + n, getattr(fleetbox, n)))
    mods.append(("hal", __import__("hal")))
    return mods


def test_every_firmware_exception_is_a_fleetbox_error():
    seen = {}
    for modname, mod in _modules():
        for name, cls in _exception_classes(mod):
            if cls is FleetboxError:
                continue
            assert issubclass(cls, FleetboxError), "%s.%s is not a FleetboxError" % (modname, name)
            seen[name] = cls
    missing = [n for n in KNOWN if n not in seen]
    assert not missing, missing


def test_root_keeps_value_error_callers_working():
    # decoders' callers catch ValueError (a malformed blob, a bad config); they still must
    from fleetbox import ber, config, usm
    for cls in (ber.BERError, config.ConfigError, usm.UsmError, FleetboxError):
        assert issubclass(cls, ValueError), cls
    try:
        ber.decode(b"\x04\x05ab")   # an OCTET STRING cut short
    except ValueError as e:
        assert isinstance(e, ber.BERError) and isinstance(e, FleetboxError)
    else:
        raise AssertionError("a malformed OID decoded")


def test_protocol_errors_are_caught_by_the_root():
    from fleetbox import https, snmp
    for exc in (snmp.Timeout("no reply from 127.0.0.1:161"), https.PinError("no pin"),
                https.ProxyError("407")):
        try:
            raise exc
        except FleetboxError as e:
            assert e is exc
    t = snmp.Timeout("x")
    assert isinstance(t, snmp.SnmpError) and t.name == "timeout"
