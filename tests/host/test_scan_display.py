"""`fbtool scan`'s table shows a printer's strings, never lets them act on the terminal."""
import io
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "host-tools"))

from fbtool import scan  # noqa: E402

HOSTILE = {"ip": "127.0.0.5", "port": 161,
           "manufacturer": "\x1b]0;owned\x07\x1b[2J\x1b[31mHP",        # set the title, clear, colour
           "model": "[bold red]LaserJet[/bold red]\r\n\x9b31m",         # rich markup, CR, C1 CSI
           "serial": "SN\u202e1234\u200b" + "9" * 300,                     # bidi override, zero width, long
           "counters": {"total": "12\x1b[8m"}, "supplies": []}


def _render(records):
    from rich.console import Console
    out = io.StringIO()
    Console(file=out, width=400, force_terminal=False, color_system=None).print(scan.table(records, "t"))
    return out.getvalue()


def test_control_characters_and_escapes_are_shown_not_obeyed():
    text = _render([HOSTILE])
    for raw in ("\x1b", "\x07", "\x9b", "\u202e", "\u200b", "\r"):
        assert raw not in text, repr(raw)
    assert "\\x1b]0;owned\\x07" in text and "\\x9b31m" in text and "\\u202e" in text
    assert "[bold red]LaserJet[/bold red]" in text        # markup is shown as typed, not applied
    assert "9" * 80 not in text and "\u2026" in text       # a long string is cut for the table


def test_the_record_keeps_what_the_printer_sent():
    rec = json.loads(json.dumps(HOSTILE))
    _render([rec])
    assert rec == HOSTILE
    assert scan.printable("Brother HL-L2350DW") == "Brother HL-L2350DW"
    assert scan.printable("Kyocera \u00e9\u4e2d") == "Kyocera \u00e9\u4e2d"   # printable non-ASCII stays
