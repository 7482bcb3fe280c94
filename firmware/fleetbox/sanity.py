"""Counter sanity: the box's check of a reading against the last one of the same device
(docs/profiles.md "Counter sanity check"); pure. Borrowed by the collector while it
checks a record's counters, so the sweep's peak heap does not carry it.
"""
from fleetbox.records import COUNTER_KEYS

# Splits that must add up to their whole: (whole, part, part); the flag is "a+b!=whole".
COUNTER_SUMS = (("total", "mono", "color"), ("print", "print_mono", "print_color"),
                ("copy", "copy_mono", "copy_color"), ("scan", "scan_mono", "scan_color"))
# Parts that may not exceed the whole: (whole, parts, flag).
COUNTER_BOUNDS = (("total", ("print", "copy", "fax"), "functions>total"),
                  ("total", ("a3", "a4"), "sizes>total"),
                  ("total", ("duplex",), "duplex>total"),
                  ("mono", ("print_mono", "copy_mono"), "functions>mono"),
                  ("color", ("print_color", "copy_color"), "functions>color"))


def check_counters(prev, now, tolerance=2):
    """Counter sanity: names of problems between the previous and this reading.

    `prev`/`now` are counters objects. A counter that goes down is `backwards:<key>`
    (`reset:<key>` when it drops to under a tenth); parts that exceed their whole by more
    than `tolerance` percent (COUNTER_BOUNDS: `functions>total`, `sizes>total`, ...) and
    splits that disagree with their whole (COUNTER_SUMS: `mono+color!=total`, ...) are
    flagged by name. Every counter key (COUNTER_KEYS) is covered.
    """
    flags = []
    if prev:
        for k in COUNTER_KEYS:
            a, b = prev.get(k), now.get(k)
            if isinstance(a, int) and isinstance(b, int) and b < a:
                flags.append(("reset:" if b * 10 < a else "backwards:") + k)
    for whole, parts, flag in COUNTER_BOUNDS:
        w = now.get(whole)
        if isinstance(w, int) and w > 0:
            fn = [now[k] for k in parts if isinstance(now.get(k), int)]
            if fn and sum(fn) * 100 > w * (100 + tolerance):
                flags.append(flag)
    for whole, a, b in COUNTER_SUMS:
        w, m, c = now.get(whole), now.get(a), now.get(b)
        if isinstance(w, int) and w > 0 and isinstance(m, int) and isinstance(c, int):
            if abs(m + c - w) * 100 > w * tolerance:
                flags.append("%s+%s!=%s" % (a, b, whole))
    return flags
