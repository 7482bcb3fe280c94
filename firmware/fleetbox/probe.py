"""The printer probe: first contact with an address, and whether it is a printer."""
from fleetbox import ber, oids, records, snmp
from fleetbox.port import WARN, log
from fleetbox.walker import Target


async def first_contact(walker, creds, host, port, any_port, cred_of, memory):
    """(Target, system group {oid: value}) of the first credential that answers, or None.

    The credential that answered last is tried first: `cred_of` ({host: index into creds})
    remembers it for a collector's life, device memory (devstate) across sweeps."""
    known = cred_of.get(host)
    if known is None:
        known = memory.collect_credential(host)
    order = list(range(len(creds)))
    if known is not None and 0 <= known < len(creds):
        order.remove(known)
        order.insert(0, known)
    for i in order:
        t = Target(host, port, creds[i], any_port)
        try:
            got = await walker.get(t, oids.SYS_GROUP)
        except snmp.Timeout:
            continue
        except snmp.SnmpError as e:
            if t.cred.version == "3":
                log("collector", WARN, "%s:%d: %s" % (host, port, e))   # wrong user, password...
            continue
        if len(cred_of) > 1024:
            cred_of.clear()
        cred_of[host] = i
        if known != i:
            memory.keep_collect_credential(host, i)
        return t, got
    return None


class PrinterCheck:
    """What the printer check learnt, for the reads after it.

    hr: how much of the hrDeviceTable exists ("types", "descr" or None); printer_row:
    the printer's hrDeviceTable row when the first GETNEXT showed it; printer_descr: its
    hrDeviceDescr when that came along (no types column); mib: the Printer-MIB answered;
    next: the first rows of the supplies and alert tables, as (oid, value); supplies_pre:
    the answer to the supplies walk's first request when it rode along.
    """

    def __init__(self):
        self.hr = None
        self.printer_row = None
        self.printer_descr = None
        self.mib = False
        self.next = ()
        self.supplies_pre = None

    def first_row(self, root):
        """(oid, value) where the first GETNEXT found `root`'s first row, or None (no table)."""
        for oid, v in self.next:
            if oid.startswith(root + ".") and not ber.is_exception(v):
                return oid, v
        return None


async def check_printer(walker, t, profile, lead=None, alerts=True):
    """A PrinterCheck when the Printer-MIB is there, or a printer maker's agent lists an
    hrDevicePrinter; else None.

    One request: the first hrDeviceType, supply level and (with `alerts`: scans that
    read status) alert, by GETNEXT. The Printer-MIB's mandatory groups include tables
    after prtMarkerSuppliesLevel (media paths, channels, interpreters, console,
    alerts), so where the supplies or alerts GETNEXT lands tells whether it is there.
    `lead`: (OID, max-repetitions) of the supplies walk's first request, which then
    rides along as the repeated part of a GETBULK (one exchange less per printer).
    """
    found = PrinterCheck()
    nxt = None
    first = [oids.HR_DEVICE + ".2", oids.ALERT_ROOT] if alerts else [oids.HR_DEVICE + ".2"]
    k = len(first)
    if lead and t.cred.version != "1":
        vbs, _ = await walker.bulk(t, first + [lead[0]], lead[1], k)
        if not t.nobulk and len(vbs) >= k:
            pre = vbs[k:]
            found.supplies_pre = pre
            nxt = [vbs[0], pre[0] if pre else ("", None)] + vbs[1:k]
    if nxt is None:
        nxt = await walker.getnext(t, [oids.HR_DEVICE + ".2", oids.SUPPLY_ROOT] + first[1:])
    found.next = nxt[1:]
    # Where the first GETNEXT of hrDeviceType landed tells how much of the table exists.
    hr = nxt[0]
    hr_next = hr[0] if not ber.is_exception(hr[1]) else ""
    found.hr = "types" if hr_next.startswith(oids.HR_DEVICE + ".2.") else (
        "descr" if hr_next.startswith(oids.HR_DEVICE + ".") else None)
    last = hr_next.rsplit(".", 1)[-1]
    if found.hr == "types" and hr[1] == oids.HR_DEVICE_PRINTER and last.isdigit():
        found.printer_row = int(last)   # usually row 1: no walk
    elif found.hr == "descr" and last.isdigit():
        # no types column: the first row stands for the printer, and its descr is here
        found.printer_row = int(last)
        found.printer_descr = records.text(hr[1])
    for oid, v in nxt[1:3]:
        if oid.startswith(oids.PRINTER_MIB + ".") and not ber.is_exception(v):
            found.mib = True
            return found
    # Without the Printer-MIB only a printer maker's own agent with an hrDevicePrinter
    # counts: a Windows server lists its print queues as hrDevicePrinter too.
    if profile is None or found.hr != "types":
        return None
    if hr[1] == oids.HR_DEVICE_PRINTER:
        return found
    rows = await walker.columns(t, oids.HR_DEVICE, [2], 4, 32)
    for r in rows.values():
        if r.get(2) == oids.HR_DEVICE_PRINTER:
            return found
    return None

