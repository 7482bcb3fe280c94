"""Bounded decoder fuzz (the long run is bench/snmp/fuzz.py, 1,000,000 packets).

Mutated real packets (every printer recording as Responses, net-snmp captures, SNMPv3
messages) must make the decoders raise BERError and nothing else.
"""
import importlib.util
import os

from fleetbox import ber, snmp, usm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("snmp_fuzz", os.path.join(ROOT, "bench", "snmp", "fuzz.py"))
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)


def test_corpus_is_real_and_decodes():
    packets = fuzz.corpus()
    assert len(packets) > 300
    rec = sum(1 for p in packets if snmp.message_version(p) in (0, 1))
    assert rec > 300  # Responses built from the recordings
    for p in packets:  # unmutated, every one decodes
        if snmp.message_version(p) == 3:
            usm.decode_message(p)
        else:
            snmp.decode_response(p)
            ber.decode(p)


def test_20000_mutations_raise_only_bererror():
    accepted, bugs = fuzz.run(20000, seed=3, report=None)
    assert bugs == [], bugs[0][1] if bugs else ""
    assert 500 < accepted < 19000  # the mutations reach past the first header, not only garbage


def test_fuzz_finds_a_planted_bug():
    """The harness itself can fail: a decoder raising IndexError is reported."""
    real = snmp.decode_response

    def broken(data):
        if len(data) % 7 == 0:
            raise IndexError("planted")
        return real(data)
    snmp.decode_response = broken
    try:
        accepted, bugs = fuzz.run(200, seed=1, report=None)
    finally:
        snmp.decode_response = real
    assert bugs and "planted" in bugs[0][1]
