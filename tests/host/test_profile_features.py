"""fbtool's profile compiler: model rules, duplex words, install_date and `re` text rules,
and the patterns the box's re cannot run refused by name."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "host-tools"))

from fbtool import profiles as compiler  # noqa: E402

MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")


def compile_one(**extra):
    data = {"vendor": "Acme", "enterprises": [99999]}
    data.update(extra)
    return compiler.compile_profile(data, "acme.yaml")


def test_model_rules_duplex_words_install_date_and_patterns_compile():
    p = compile_one(model_rules=[{"re": "^(QL|PT)-", "technology": "thermal", "duplex": False},
                                 {"re": "[0-9]+[a-z]*d[a-z]*$", "duplex": True}],
                    duplex_words=["Simplex/Duplex"],
                    install_date=[{"oid": ".1.3.6.1.4.1.641.6.2.3.1.7.1"}],
                    firmware=[{"sysdescr": True, "re": "; SS ([0-9.]+)"}])
    assert p["model_rules"] == [{"re": "^(QL|PT)-", "technology": "thermal", "duplex": False},
                                {"re": "[0-9]+[a-z]*d[a-z]*$", "duplex": True}]
    assert p["duplex_words"] == ["Simplex/Duplex"]
    assert p["install_date"] == [{"oid": "1.3.6.1.4.1.641.6.2.3.1.7.1"}]
    assert p["firmware"] == [{"sysdescr": True, "re": "; SS ([0-9.]+)"}]


@pytest.mark.parametrize("extra, words", [
    ({"model_rules": []}, "list of 1-16 rules"),
    ({"model_rules": [{"technology": "laser"}]}, "a rule is {re, technology, duplex}"),
    ({"model_rules": [{"re": "x"}]}, "names neither technology nor duplex"),
    ({"model_rules": [{"re": "x", "technology": "offset"}]}, "technology: one of"),
    ({"model_rules": [{"re": "x", "duplex": "yes"}]}, "duplex: true or false"),
    ({"model_rules": [{"re": "x", "duplex": True, "color": True}]}, "unknown keys ['color']"),
    ({"model_rules": [{"re": "[0-9]{3}", "duplex": True}]}, "{m,n} counts"),
    ({"model_rules": [{"re": "(?i)laser", "technology": "laser"}]}, "(?...) groups"),
    ({"firmware": [{"sysdescr": True, "re": "Rev[0-9.]+"}]}, "exactly one group"),
    ({"firmware": [{"sysdescr": True, "re": "(a)(b)"}]}, "exactly one group"),
    ({"duplex_words": "Duplex"}, "list of non-empty strings"),
])
def test_mistakes_are_named(extra, words):
    with pytest.raises(compiler.ProfileSourceError) as e:
        compile_one(**extra)
    assert words in str(e.value) and "acme.yaml" in str(e.value)


def test_patterns_too_complex_for_the_box_are_refused_and_the_shipped_ones_run():
    assert os.path.exists(MICROPYTHON)
    long_alternation = compile_one(model_rules=[
        {"re": "OfficeJet|DeskJet|PageWide|DesignJet|ENVY|Envy|Smart Tank|Ink Tank", "technology": "inkjet"}])
    with pytest.raises(compiler.ProfileSourceError) as e:
        compiler.check_patterns_on_micropython([long_alternation])
    assert "too complex" in str(e.value) and "OfficeJet|DeskJet" in str(e.value)
    shipped = compiler.compile_dir()["profiles"]          # compile_dir checks them itself
    assert compiler.check_patterns_on_micropython(shipped) >= 30
    assert compiler.check_patterns_on_micropython(shipped, "/nonexistent/micropython") is None
