from check import raises
from fleetbox import targets


def test_single_and_port():
    assert list(targets.expand(["10.1.2.3"])) == [("10.1.2.3", 161)]
    assert list(targets.expand(["10.1.2.3:1161"])) == [("10.1.2.3", 1161)]


def test_cidr_skips_network_and_broadcast():
    got = list(targets.expand(["192.0.2.0/30"]))
    assert got == [("192.0.2.1", 161), ("192.0.2.2", 161)]
    assert targets.count(["127.31.0.0/24"]) == 254
    assert list(targets.expand(["192.0.2.7/32"])) == [("192.0.2.7", 161)]


def test_ranges_and_exclusions():
    assert [a for a, _ in targets.expand(["10.0.0.5-7"])] == ["10.0.0.5", "10.0.0.6", "10.0.0.7"]
    assert [a for a, _ in targets.expand(["10.0.0.250-10.0.1.1"], exclude=["10.0.0.251-10.0.0.255"])] == \
        ["10.0.0.250", "10.0.1.0", "10.0.1.1"]


def test_expand_is_lazy():
    gen = targets.expand(["10.0.0.0/8"])
    assert next(gen) == ("10.0.0.1", 161)


def _expand_all(specs):
    return list(targets.expand(specs))


def test_bad_specs_name_the_problem():
    for bad in ["10.0.0", "10.0.0.256", "10.0.0.1/33", "10.0.0.9-3", "10.0.0.1:0", "host:x", "bad_name",
                "-x.example", "a..b", "10.0.0.1/24:x"]:
        e = raises(targets.TargetError, _expand_all, [bad])
        assert str(e)


def test_host_names_resolve_when_reached():
    assert targets.is_name("printer.local") and targets.is_name("localhost")
    assert not targets.is_name("10.0.0.5-7") and not targets.is_name("10.0.0.1")
    assert targets.parse("printer.local:1161") == ("printer.local", None, 1161)
    gen = targets.expand(["no-such-printer.invalid", "localhost:1161", "192.0.2.1"])
    # the unresolvable name is logged and skipped; the sweep goes on
    assert list(gen) == [("127.0.0.1", 1161), ("192.0.2.1", 161)]
    assert [a for a, _ in targets.expand(["127.0.0.1-3"], exclude=["localhost", "x.invalid"])] == \
        ["127.0.0.2", "127.0.0.3"]
