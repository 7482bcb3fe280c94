"""Fuzz the box's SNMP decoders with mutated real packets (long run).

Usage: .venv/bin/python bench/snmp/fuzz.py [PACKETS=1000000] [SEED=1]

The corpus is real data: GETBULK-sized Response messages holding every row of every
recording in ../shared/printer-walks/recordings/ (v1 and v2c), snmpd/net-snmp captures,
and SNMPv3 messages (plaintext, authenticated, encrypted). Each packet is mutated
(bit flips, boundary octets, inserted/deleted/duplicated runs, truncation, length
fields rewritten) and fed to snmp.decode_response, usm.decode_message (+ ScopedPDU and
PDU) and ber.decode. Anything but BERError is a bug: printed, and the exit code is 1.
tests/faults/test_ber_fuzz.py runs the same code for 20,000 packets.
"""
import os
import random
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "firmware"))

from fleetbox import ber, snmp, usm  # noqa: E402

WALKS = os.environ.get("FLEETBOX_WALKS") or os.path.join(ROOT, "..", "shared", "printer-walks")

# net-snmp 5.9 captures (tests/firmware/test_snmp.py)
CAPTURES = [bytes.fromhex(h.replace(" ", "")) for h in (
    "30 29 02 01 01 04 06 70 75 62 6C 69 63 A0 1C 02 04 65 2F 68 ED 02 01 00 02 01 00"
    " 30 0E 30 0C 06 08 2B 06 01 02 01 01 01 00 05 00",
    "30 57 02 01 01 04 06 70 75 62 6C 69 63 A2 4A 02 03 16 B8 BA 02 01 00 02 01 00 30 3D"
    " 30 0F 06 08 2B 06 01 02 01 01 06 00 04 03 6C 61 62 30 0C 06 08 2B 06 01 02 01 01 07"
    " 00 81 00 30 0D 06 09 2B 06 01 02 01 01 09 09 09 80 00 30 0D 06 08 2B 06 01 02 01 01"
    " 03 00 43 01 64")]


def _value(t, v):
    if t == "2":
        return ber.encode_int(int(v))
    if t == "4":
        return ber.encode_octets(v.encode())
    if t == "4x":
        return ber.encode_octets(bytes.fromhex(v))
    if t == "6":
        return ber.encode_oid(v)
    if t == "64":
        return ber.encode_ip(v if "." in v else bytes.fromhex(v))
    if t in ("65", "66", "67"):
        return ber.encode_unsigned(int(v), int(t))
    if t == "70":
        return ber.encode_counter64(int(v))
    raise ValueError(t)


def recording_rows(path):
    rows = []
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("|", 2)
            if len(parts) != 3:
                continue
            try:
                rows.append((parts[0], _value(parts[1], parts[2])))
            except (ValueError, ber.BERError):
                continue  # a recording's own oddity (e.g. an OID recorded as "0")
    return rows


def corpus(max_per_recording=40):
    """Real-data packets: bytes of v1/v2c Responses, captures and SNMPv3 messages."""
    out = list(CAPTURES)
    rdir = os.path.join(WALKS, "recordings")
    rid = 1
    for name in sorted(os.listdir(rdir)):
        if not name.endswith(".snmprec"):
            continue
        rows = recording_rows(os.path.join(rdir, name))
        chunks = [rows[i:i + 10] for i in range(0, len(rows), 10)]
        step = max(1, len(chunks) // max_per_recording)
        for k, chunk in enumerate(chunks[::step]):
            rid = (rid * 1103515245 + 12345) & 0x7FFFFFFF
            out.append(snmp.encode_message("2c" if k % 3 else "1", name[:-8], ber.RESPONSE, rid, chunk))
    users = [usm.User("fuzz-noauth"), usm.User("fuzz-sha", "SHA", "fuzz-auth-pass"),
             usm.User("fuzz-aes", "MD5", "fuzz-auth-pass", "AES", "fuzz-priv-pass")]
    eid = bytes.fromhex("80001f8880fb1e7b0c0ffee000000001")
    rows = recording_rows(os.path.join(rdir, "brother.snmprec"))[:12]
    pdu_msg = snmp.encode_message("2c", b"", ber.RESPONSE, 77, rows)
    b = memoryview(pdu_msg)
    _, s, e = ber.read_tlv(b, 0, len(b))
    _, s1, e1 = ber.read_tlv(b, s, e)
    _, s2, e2 = ber.read_tlv(b, e1, e)
    pdu = bytes(b[e2:e])
    for u in users:
        scoped = usm.encode_scoped(eid, b"MFP", pdu)
        out.append(usm.encode_message(77, 1500, u, eid, 3, 12345, scoped, b"\x00" * 7 + b"\x05"))
    out.append(usm.encode_message(78, 1500, usm.User(""), b"", 0, 0,
                                  usm.encode_scoped(b"", b"", snmp.encode_pdu(ber.GET, 78, []))))
    return out


_BOUNDARY = (0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x84, 0x85, 0xFF, 0x30, 0x02, 0x04, 0x06, 0xA2)


def mutate(rng, data):
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        n = len(b)
        op = rng.randrange(8)
        if n == 0:
            b.append(rng.randrange(256))
            continue
        i = rng.randrange(n)
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i] = rng.choice(_BOUNDARY)
        elif op == 2:
            b[i] = rng.randrange(256)
        elif op == 3:
            b.insert(i, rng.choice(_BOUNDARY) if rng.random() < 0.5 else rng.randrange(256))
        elif op == 4:
            del b[i:i + rng.randrange(1, 5)]
        elif op == 5:
            del b[rng.randrange(n):]
        elif op == 6:
            j = rng.randrange(n)
            b[j:j] = b[i:i + rng.randrange(1, 32)]
        else:  # a long-form length where there was a short one
            if b[i] < 0x80:
                b[i:i + 1] = (bytes((0x84, 0, 0, 0, b[i])) if rng.random() < 0.5
                              else bytes((0x84, 0xFF, 0xFF, 0xFF, 0xFF)))
    return bytes(b)


def decode_all(data):
    """Every decoder the client runs on a datagram; returns how many accepted it."""
    ok = 0
    for fn in (snmp.decode_response, ber.decode):
        try:
            fn(data)
            ok += 1
        except ber.BERError:
            pass
    try:
        m = usm.decode_message(data)
        ok += 1
        if m.scoped is not None:
            b = memoryview(m.data)
            _, _, ps, pe = usm.decode_scoped(b, m.scoped[0], m.scoped[1])
            snmp.decode_pdu(b, ps, pe)
    except ber.BERError:
        pass
    return ok


def run(n, seed=1, report=print):
    """Decode n mutated packets; return (accepted, [(packet, traceback) of bugs])."""
    rng = random.Random(seed)
    packets = corpus()
    accepted = 0
    bugs = []
    for k in range(n):
        data = mutate(rng, packets[k % len(packets)])
        try:
            accepted += 1 if decode_all(data) else 0
        except Exception:  # noqa: BLE001  anything but BERError is what we are looking for
            bugs.append((data, traceback.format_exc()))
            if report:
                report("NON-BERError on %s:\n%s" % (data.hex(), bugs[-1][1]))
            if len(bugs) >= 20:
                break
    return accepted, bugs


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    packets = corpus()
    t0 = time.monotonic()
    accepted, bugs = run(n, seed)
    dt = time.monotonic() - t0
    print("decoder fuzz: %d mutated packets from a corpus of %d real ones in %.1f s = %.0f packets/s;"
          " %d still decoded, %d non-BERError exceptions"
          % (n, len(packets), dt, n / dt, accepted, len(bugs)))
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
