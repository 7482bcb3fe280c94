"""fleetbox.web page rules (docs/profiles.md "Web pages"): the documented vector, streaming in
any piece size, numbers and text, hostile windows. Runs on CPython and MicroPython."""
import json

from fleetbox import profiles, web


def _dir():
    f = __file__.replace("\\", "/")
    return f.rsplit("/", 1)[0] if "/" in f else "."


def _vector():
    d = _dir() + "/../../docs/vectors/"
    lib = profiles.load([d + "web-profile.json"])
    with open(d + "web-page.html", "rb") as f:
        page = f.read()
    with open(d + "web-expected.json") as f:
        expected = json.load(f)
    return lib.get("ExampleWeb"), page, expected


def _run(fields, page, step):
    ex = web.Extractor(fields)
    for i in range(0, len(page), step):
        ex.feed(page[i:i + step])
        if ex.complete():
            break
    ex.finish()
    return ex.found


def test_documented_vector_in_every_piece_size():
    p, page, expected = _vector()
    fields = p["web"][0]["fields"]
    for step in (1, 2, 3, 7, 64, 500, len(page)):
        assert _run(fields, page, step) == expected, step
    # "Fax Pages" shows "--": no value, never a 0 standing in for unknown
    assert "counters.fax" not in expected


def test_window_bounded_and_marker_split_across_pieces():
    fields = {"counters.total": {"after": "Total:", "within": 10}}
    assert _run(fields, b"x" * 5000 + b"Total: 12", 4096) == {"counters.total": 12}
    # the number lies past the window: nothing
    assert _run(fields, b"Total:" + b" " * 20 + b"5", 3) == {}
    ex = web.Extractor(fields)
    for _ in range(200):
        ex.feed(b"y" * 997)
    assert len(ex.buf) <= ex.keep            # a long page without the marker: the window stays small
    # the first occurrence counts
    assert _run(fields, b"Total: 7 pages ... Total: 9", 5) == {"counters.total": 7}


KY = "^\\s*=\\s*\\('([0-9]+)'"   # as profiles/kyocera.yaml


def test_sum_of_counters_alone_and_only_when_every_part_is_known():
    page = (b"var _pp = new Object();\n_pp.copytotal = ('4432');\n_pp.printertotal = ('10926');\n"
            b"_pp.faxBlackWhite = ('474').toString();\n" + b"_pp.pad = 0;\n" * 300)
    part = {"after": "_pp.printertotal", "within": 40, "re": KY}
    copy = {"after": "_pp.copytotal", "within": 40, "re": KY}
    fax = {"after": "_pp.faxBlackWhite", "within": 40, "re": KY}
    total = {"sum": [part, copy, fax]}
    for step in (1, 5, 64, len(page)):
        # the sum alone (SNMP gave the parts): the parts are read for it, reported under the sum only
        assert _run({"counters.total": total}, page, step) == {"counters.total": 15832}, step
        got = _run({"counters.total": total, "counters.copy": copy}, page, step)
        assert got == {"counters.total": 15832, "counters.copy": 4432}, step
    ex = web.Extractor({"counters.total": total})
    ex.feed(page[:200])
    assert ex.complete()                                  # judged: the rest of the page is not read
    # a part without a value: no sum, never a partial one
    assert _run({"counters.total": total}, page.replace(b"('474')", b"('')"), 7) == {}
    assert _run({"counters.total": total}, page.replace(b"_pp.faxBlackWhite", b"_pp.faxOther"), 7) == {}


def test_numbers():
    n = web.first_integer
    assert n("12,345") == 12345 and n("12.345") == 12345 and n("1'234") == 1234
    assert n("1 234 567 pages") == 1234567 and n("48,213.0") == 48213
    assert n("3.5") == 3 and n("12,34") == 12 and n("no digits") is None
    assert n("99999999999999999") is None                 # not a page counter
    assert web.extract({"after": "x"}, b'<td class="v2" width="50">1,000</td>', True) == 1000
    assert web.extract({"after": "x"}, b' data-a="7">&nbsp;42</td>', True) == 42   # marker inside a tag


def test_text_and_patterns():
    assert web.extract({"after": "x"}, b"</dt>\n<dd>  E78 45  </dd>", False) == "E78 45"
    assert web.extract({"after": "x"}, b"<b></b>", False) is None
    assert web.extract({"after": "x"}, b"Z" * 500, False) == "Z" * web.MAX_TEXT
    rule = {"after": "x", "re": "Ver\\.([0-9][0-9A-Za-z.]*)"}
    assert web.extract(rule, b": Ver.2.31b (c)", False) == "2.31b"
    assert web.extract(rule, b": version 2", False) is None
    assert web.extract({"after": "x", "re": "'([0-9]+)'"}, b" = parseInt('812',10);", True) == 812
    assert web.extract({"after": "x", "re": "'([a-z]+)'"}, b" = 'abc'", True) is None
    # bytes that are not UTF-8 never raise
    assert web.extract({"after": "x"}, b"<td>\xff\xfe\x80Gr\xfcn</td>", False) is not None
    assert web.extract({"after": "x"}, b"\xff\x00<<<>>>&&&;;", True) is None


def test_redirects_stay_on_the_host():
    loc = web._split_location
    assert loc("/a?b", "10.0.0.5", "http", {}) == ("http", None, "/a?b")
    assert loc("https://10.0.0.5/x", "10.0.0.5", "http", {}) == ("https", None, "/x")
    assert loc("https://10.0.0.5:8443", "10.0.0.5", "http", {}) == ("https", 8443, "/")
    for bad in ("https://10.0.0.6/x", "ftp://10.0.0.5/", "javascript:x", "http://10.0.0.5:x/",
                "/a\r\nX-Evil: 1", "/a b", "//10.0.0.6/x", "/" + "a" * 400):
        try:
            loc(bad, "10.0.0.5", "http", {})
        except web.WebError:
            continue
        raise AssertionError(bad)
    assert web.port_for("https", None, {}) == 443
    assert web.port_for("https", None, {"443": 17444}) == 17444
    assert web.port_for("http", 8080, {"80": 1}) == 8080


def test_box_config_web_ports():
    from check import raises
    from fleetbox import config
    assert config.check({"targets": ["10.0.0.0/30"]})["web_ports"] == {}
    assert config.check({"targets": ["10.0.0.0/30"], "web_ports": {"80": 8080}})["web_ports"] == {"80": 8080}
    for bad in ({"80": 0}, {"http": 80}, {"80": "8080"}, [80]):
        raises(config.ConfigError, config.check, {"targets": ["10.0.0.0/30"], "web_ports": bad})
