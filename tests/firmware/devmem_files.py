"""Device memory files as a site's box writes them (docs/collection.md "Device memory"), for
the tests of both runtimes and the heap proof."""


def realistic(printers):
    """The entries of `printers` printers: an "@<address>" entry and a serial entry each,
    shaped as the documented example."""
    d = {}
    for i in range(printers):
        serial = "VNB3K%05d" % i
        d["@10.0.%d.%d" % (i // 200, 10 + i % 200)] = {
            "seen": 1, "sr": serial, "mc": "a0:d3:c1:8c:%02x:%02x" % (i // 256, i % 256), "pw": "on", "pc": 0,
            "rows": {"supplies": 4, "alerts": 1, "console": 2, "paths": 3, "colorants": 4}, "hrmfp": 0}
        d[serial] = {"c": {"total": 48213 + i}, "t": 1764460800 + i, "f": 1700000000 + i}
    return d


def spread(value, level=0):
    """`value` as JSON text with line breaks, tabs and spaces between all its tokens (json.dumps
    has no indent on MicroPython)."""
    import json
    pad = "\r\n" + "\t" * (level + 1) + " "
    if isinstance(value, dict):
        if not value:
            return "{ }"
        return "{" + ",".join(pad + json.dumps(k) + " :\t" + spread(v, level + 1) for k, v in value.items()) + "\n}"
    if isinstance(value, list):
        return "[" + " , ".join(spread(v, level + 1) for v in value) + pad + "]"
    return json.dumps(value)
