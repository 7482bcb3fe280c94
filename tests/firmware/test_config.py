from check import raises
from fleetbox import config


def test_defaults_fill_in():
    c = config.check({"targets": ["10.0.0.0/30"]})
    assert c["communities"] == [b"public"] and c["snmp_port"] == 161 and c["intervals"]["full"] == 300


def test_bad_fields_are_named():
    cases = [({"targets": "10.0.0.1"}, "targets"), ({"targets": ["10.0.0.300"]}, "targets"),
             ({"snmp_version": "3"}, "snmp_version"), ({"timeout_ms": -1}, "timeout_ms"),
             ({"endpoints": [{"url": "http://x"}]}, "https"), ({"pins": ["zz"]}, "pins"),
             ({"intervals": {"full": 0}}, "intervals"), ({"targets": ["bad_name"]}, "targets"),
             ({"exclude": ["printer..local"]}, "targets")]
    for cfg, word in cases:
        e = raises(config.ConfigError, config.check, cfg)
        assert word in str(e), (cfg, str(e))


def test_host_names_are_accepted_unresolved():
    # resolved on the box when the sweep reaches them, not when the config is loaded
    c = config.check({"targets": ["printer.local", "mfp-3.example.invalid:1161", "10.0.0.0/30"],
                      "exclude": ["localhost"]})
    assert c["targets"][0] == "printer.local"


def test_missing_file():
    e = raises(config.ConfigError, config.load, "/nonexistent/config.json")
    assert "no configuration" in str(e)


def test_ping_is_on_unless_turned_off():
    assert config.check({})["ping"] is True
    assert config.check({"ping": False})["ping"] is False
    for bad in (1, "no", None):
        assert "ping" in str(raises(config.ConfigError, config.check, {"ping": bad}))
