"""fleetbox.squeeze: its raw DEFLATE streams inflate to the input (zlib on CPython with the
preset dictionary; MicroPython's own inflater, which takes no dictionary, without one).

Runs under pytest on CPython and under tests/mprun.py on MicroPython.
"""
import io
import sys

from fleetbox import cbor, paydict, squeeze

MICROPYTHON = sys.implementation.name == "micropython"


def _inflate(stream, zdict=b""):
    if MICROPYTHON:
        import deflate
        if zdict:
            return None     # MicroPython's inflater takes no preset dictionary
        return deflate.DeflateIO(io.BytesIO(bytes(stream)), deflate.RAW, 15).read()
    import zlib
    d = zlib.decompressobj(-15, zdict=zdict) if zdict else zlib.decompressobj(-15)
    out = d.decompress(bytes(stream))
    assert d.eof and not d.unused_data
    return out


def _lcg(n, seed, alphabet):
    out = bytearray()
    x = seed
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(alphabet[(x >> 16) % len(alphabet)])
    return bytes(out)


CASES = [
    b"",
    b"a",
    b"ab",
    b"abc",
    b"aaaa" * 300,                                   # matches of the maximum length, distance 1
    bytes(range(256)) * 3,                           # distance 256, lengths with extra bits
    _lcg(3000, 7, b"abcab\x00\xff"),                 # short matches everywhere
    _lcg(2000, 3, bytes(range(256))),                # mostly literals, 9-bit codes too
    _lcg(700, 5, b"xyz") + _lcg(9000, 9, bytes(range(256))) + _lcg(700, 5, b"xyz"),  # far repeats
]


def test_streams_inflate_to_the_input():
    for data in CASES:
        z = squeeze.compress(bytearray(data))
        assert _inflate(z) == data, len(data)


def test_the_preset_dictionary_is_referred_to_not_resent():
    words = b"prtMarkerSuppliesTable prtMarkerLifeCount impressions percent toner"
    data = (words * 3)[5:130]
    with_dict = squeeze.compress(bytearray(words) + data, len(words))
    without = squeeze.compress(bytearray(data))
    assert len(with_dict) < len(without) // 2
    got = _inflate(with_dict, words)
    assert got is None or got == data
    assert _inflate(without) == data


def test_records_with_dictionary_one_shrink_and_come_back():
    rec = {"#": 1, "ip": "10.1.2.3", "model": "LaserJet", "sources": {"counters.total": "prtMarkerLifeCount"},
           "supplies": [{"kind": "toner", "unit": "percent", "state": "ok", "color": "black", "index": 1}],
           "status": {"device": "running", "printer": "idle", "errors": [], "alerts": []}}
    data = cbor.dumps({"s": 1, "c": 1800000000, "r": [rec, dict(rec, ip="10.1.2.4")]})
    buf = bytearray(paydict.DICT1)
    buf.extend(data)
    z = squeeze.Deflater(buf, len(paydict.DICT1))
    slices = 1
    while not z.step(64):
        slices += 1
    assert slices > 2                    # the work is cut in slices a caller can yield between
    assert len(z.out) * 3 < len(data)
    got = _inflate(z.out, paydict.DICT1)
    assert got is None or got == data
