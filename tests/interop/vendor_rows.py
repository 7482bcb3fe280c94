"""Vendor counter rows that no recording holds, added to two real recordings.

No recording in ../shared/printer-walks holds a vendor counter table or blob (grep: Ricoh
.367.3.2.1.2.19.5.1, Lexmark .641.6.4.2.1.1, Brother .2435.2.3.9.4.2.1.5.5.10.0): real
recordings with such rows added (written as snmprec lines, served by the same snmpsim)
check the collector end to end. tests/interop/test_recordings.py and
bench/collect/records_golden.py serve the same two files.
"""
RICOH_TABLE = "1.3.6.1.4.1.367.3.2.1.2.19.5.1"
RICOH_ROWS = [(1, 10, 81234), (2, 200, 1000), (3, 201, 20), (4, 203, 3), (5, 300, 17),
              (6, 400, 50000), (7, 401, 123), (8, 870, 900), (9, 871, 11), (10, 999, 5)]
BROTHER_BLOB = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.10.0"
BROTHER_IDS = [(0x00, 7777777), (0x01, 8001), (0x02, 0), (0x12, 321)]


def _oid_key(line):
    return tuple(int(a) for a in line.split("|", 1)[0].strip(".").split(".") if a.isdigit())


def with_lines(src, dst, lines):
    """A copy of the recording `src` at `dst` with snmprec `lines` added in OID order."""
    with open(src, encoding="utf-8", errors="surrogateescape") as f:
        old = [x for x in f.read().splitlines() if x.strip()]
    with open(dst, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write("\n".join(sorted(old + lines, key=_oid_key)) + "\n")
    return str(dst)


def with_vendor_rows(walks, ricoh_dst, brother_dst):
    """(ricoh path, brother path): the Ricoh MP C3002 recording with its counter table,
    the Brother recording with its counter blob."""
    rows = []
    for idx, typ, val in RICOH_ROWS:
        rows += ["%s.2.%d|2|%d" % (RICOH_TABLE, idx, typ), "%s.9.%d|65|%d" % (RICOH_TABLE, idx, val)]
    blob = b"".join(bytes([i, 4]) + v.to_bytes(4, "big") for i, v in BROTHER_IDS) + b"\xff"
    recordings = walks / "recordings"
    return (with_lines(recordings / "ricoh_mpc3002.snmprec", ricoh_dst, rows),
            with_lines(recordings / "brother.snmprec", brother_dst, ["%s|4x|%s" % (BROTHER_BLOB, blob.hex())]))
