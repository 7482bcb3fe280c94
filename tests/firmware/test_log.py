"""The box's log (docs/logging.md): one line format, a threshold, secrets never written."""
import json
import os
import sys

for _p in list(sys.path):
    if _p.endswith("/firmware") and _p[:-8] + "/board" not in sys.path:
        sys.path.append(_p[:-8] + "/board")   # hal.py lives in board/, next to firmware/

import hal  # noqa: E402
from check import LogCapture, raises, tmp  # noqa: E402
from fleetbox import config, health, port, snmp, uplink  # noqa: E402
from fleetbox.spool import Spool  # noqa: E402

COMMUNITY = "n0t-public-42"
AUTH_PASS = "auth-pass-9f3k"
PRIV_PASS = "priv-pass-2b7q"
PROXY_PASS = "proxy-pw-77x"
DEVICE_KEY = "5e" * 32


def test_one_line_per_event_level_letter_tag_message():
    with LogCapture(port.DEBUG) as log:
        port.log("uplink", port.INFO, "sent 3 batches")
        port.log("collector", port.DEBUG, "10.0.0.5: 42 objects")
        port.log("spool", port.WARN, "batch 7 unreadable, dropped")
        port.log("main", port.ERROR, "cannot start: no configuration")
    assert log.lines == ["I uplink: sent 3 batches", "D collector: 10.0.0.5: 42 objects",
                         "W spool: batch 7 unreadable, dropped", "E main: cannot start: no configuration"]


def test_threshold_drops_what_is_below_it():
    for level, kept in ((port.DEBUG, "DIWE"), (port.INFO, "IWE"), (port.WARN, "WE"),
                        (port.ERROR, "E"), (port.OFF, "")):
        with LogCapture(level) as log:
            for lv in (port.DEBUG, port.INFO, port.WARN, port.ERROR):
                port.log("t", lv, "m")
            assert "".join(line[0] for line in log.lines) == kept, (level, log.lines)
            assert port.logs(port.WARN) == (level <= port.WARN)


def test_threshold_by_name_and_from_the_config():
    d = _fresh_dir(tmp("fblog-spool"))
    with LogCapture() as log:
        port.set_log_level("warn")
        assert port.log_level() == port.WARN
        # a batch torn by flash corruption is dropped with a warning: it shows at "warn"...
        spool = Spool(d)
        spool.put(b'{"scan": "full", "rec')
        assert spool.peek(json.load) is None
        port.set_log_level("error")
        spool.put(b'{"scan": "full", "rec')   # ...and not at "error"
        assert spool.peek(json.load) is None and spool.corrupt == 2
    assert len(log.lines) == 1 and log.lines[0].startswith("W spool: batch "), log.lines
    raises(ValueError, port.set_log_level, "verbose")
    raises(ValueError, port.set_log_level, 9)
    assert config.check({})["log_level"] == "info"
    assert config.check({"log_level": "debug"})["log_level"] == "debug"
    e = raises(config.ConfigError, config.check, {"log_level": "loud"})
    assert "log_level" in str(e)


def _fresh_dir(d):
    try:
        for n in os.listdir(d):
            os.remove(d + "/" + n)
        os.rmdir(d)
    except OSError:
        pass
    return d


class _Board(hal.Board):
    name = "secrets"
    watchdog_ms = 400

    def led(self, pattern):
        pass

    def mac(self):
        return "02:00:00:00:00:01"

    def reboot(self):
        raise KeyboardInterrupt   # not an Exception: the test's own stop


def test_secrets_never_reach_the_log():
    cfg = config.check({"communities": [COMMUNITY], "endpoints": [{"url": "https://127.0.0.1:8443/v1/upload"}],
                        "ca": "MAIFAA==", "pins": ["00" * 32],
                        "proxy": {"url": "http://127.0.0.1:3128", "user": "box", "password": PROXY_PASS}})
    identity = {"serial": "LOG-1", "kid": 1, "device_key": DEVICE_KEY}
    cred = snmp.Credential.v3("alice", "SHA", AUTH_PASS, "AES", PRIV_PASS)
    uplink.Uplink(cfg, identity, "/nonexistent-fleetbox-state")
    with LogCapture(port.DEBUG) as log:
        # whatever a careless line carries: the whole config, the identity, an agent's refusal
        port.log("main", port.DEBUG, "config %r" % (cfg,))
        port.log("main", port.INFO, "identity %r" % (identity,))
        port.log("collector", port.WARN, "127.0.0.1:161 refused %s/%s (community %s)" % (
            AUTH_PASS, PRIV_PASS, snmp.Credential.v2c(COMMUNITY).community))
        port.log("collector", port.INFO, "credential %r" % (cred,))
        h = health.Health(_Board(), fault_reboot_s=0)
        try:
            h.fatal(RuntimeError("device key %s, proxy %s" % (DEVICE_KEY, PROXY_PASS)))
        except KeyboardInterrupt:
            pass
    out = log.text()
    for s in (COMMUNITY, AUTH_PASS, PRIV_PASS, PROXY_PASS, DEVICE_KEY):
        assert s not in out, (s, out)
    assert out.count("***") >= 8, out
    assert "Credential(v3 " in out and "fault: RuntimeError" in out   # the rest is still there


def test_short_values_are_not_masked():
    # a two-letter secret would blot out ordinary words everywhere
    port.secret("ok")
    with LogCapture(port.INFO) as log:
        port.log("t", port.INFO, "all ok")
    assert log.lines == ["I t: all ok"]
