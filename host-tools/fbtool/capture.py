"""`fbtool scan --capture FILE`: the raw SNMP walk of one device, in snmpsim's `.snmprec` form.

For onboarding a model the profiles do not know: the file replays in the simulator
(simulator/site/ `kind: recording`) and in tests exactly like the shared recordings.
Runs on the host (pysnmp), so every value keeps its SNMP type. Bounded by `max_rows`.
"""
import asyncio
import string

from .errors import FatalError, os_problem

# snmprec type codes (see the recordings' README) by pysnmp/pyasn1 class name.
TYPE_CODES = {"Integer": "2", "Integer32": "2", "OctetString": "4", "ObjectIdentifier": "6",
              "IpAddress": "64", "Counter32": "65", "Gauge32": "66", "Unsigned32": "66",
              "TimeTicks": "67", "Opaque": "68", "Counter64": "70", "Bits": "4"}
PRINTABLE = set(string.printable) - set("\r\n\x0b\x0c|")


class CaptureError(FatalError):
    pass


def snmprec_line(oid, value):
    """One `OID|type|value` line; strings that are not plain printable text go as hex (`4x`)."""
    kind = type(value).__name__
    code = TYPE_CODES.get(kind)
    if code is None:
        raise CaptureError("value of %s has an SNMP type snmprec cannot hold: %s" % (oid, kind))
    if code in ("4", "68"):
        raw = bytes(value.asOctets())
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            text = None
        if text is not None and all(c in PRINTABLE for c in text):
            return "%s|%s|%s" % (oid, code, text)
        return "%s|%sx|%s" % (oid, code, raw.hex())
    if code == "64":
        return "%s|64|%s" % (oid, ".".join(str(b) for b in value.asNumbers()))
    if code == "6":
        return "%s|6|%s" % (oid, value.prettyPrint())
    return "%s|%s|%d" % (oid, code, int(value))


async def _walk(host, port, community, version, timeout_s, retries, max_rows, out):
    from pysnmp.hlapi.v3arch.asyncio import (CommunityData, ContextData, ObjectIdentity, ObjectType,
                                             SnmpEngine, UdpTransportTarget, bulk_walk_cmd, walk_cmd)
    engine = SnmpEngine()
    try:
        target = await UdpTransportTarget.create((host, port), timeout=timeout_s, retries=retries)
        auth = CommunityData(community, mpModel=0 if version == "1" else 1)
        start = ObjectType(ObjectIdentity("1.3.6.1"))
        if version == "1":
            it = walk_cmd(engine, auth, target, ContextData(), start, lexicographicMode=False, lookupMib=False)
        else:
            it = bulk_walk_cmd(engine, auth, target, ContextData(), 0, 25, start,
                               lexicographicMode=False, lookupMib=False)
        async for err_ind, err_stat, _err_idx, var_binds in it:
            if err_ind:
                if not out:
                    raise CaptureError("%s:%d: %s" % (host, port, err_ind))
                break   # keep what was read (agents that choke half-way still give a useful file)
            if err_stat:
                break
            for name, value in var_binds:
                if type(value).__name__ in ("EndOfMibView", "NoSuchObject", "NoSuchInstance"):
                    return
                out.append(snmprec_line(str(name), value))
                if len(out) >= max_rows:
                    return
    finally:
        engine.close_dispatcher()


def capture(host, port=161, community="public", version="2c", timeout_s=1.0, retries=1, max_rows=50000):
    """The walk as a list of snmprec lines (sorted as the agent returned them)."""
    out = []
    asyncio.run(_walk(host, port, community, version, timeout_s, retries, max_rows, out))
    if not out:
        raise CaptureError("%s:%d returned nothing" % (host, port))
    return out


def write(path, lines):
    try:
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
    except OSError as e:
        raise CaptureError(os_problem(e, "cannot write"))
