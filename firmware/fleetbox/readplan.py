"""The read plan: what each scan kind asks a printer, request by request.

docs/collection.md "What a full scan asks a printer" is the order; the Collector sends
what these functions list, and fleetbox.assemble turns the answers into the record.
"""
from fleetbox import oids, profiles, records
from fleetbox.walker import MAX_ROWS

KINDS = ("discovery", "full", "counters", "supplies", "parts", "alerts")


class ReadPlan:
    """Which parts of the record a scan kind reads."""

    def __init__(self, scan):
        if scan not in KINDS:
            raise ValueError("unknown scan kind %r" % scan)
        self.scan = scan
        self.full = scan == "full"
        self.counters = scan in ("full", "counters")
        self.supplies = scan in ("full", "supplies", "parts")
        self.status = scan in ("full", "alerts")


def supplies_lead(plan, walker, t, cached, maker_or_seen, lacks_mib):
    """(OID, max-repetitions) of the supplies walk's first request, to ride along with the
    printer check (a printer maker's agent, or a device that was a printer before), or None.
    The walk starts at prtMarkerSuppliesColorantIndex (3), or reads only the levels (9)
    when the static columns are cached on flash."""
    if not (plan.supplies and maker_or_seen and not lacks_mib):
        return None
    c = 9 if cached else 3
    return oids.PRT_SUPPLIES + "." + str(c), walker.table_reps(t, "supplies", c, 9)


def narrow_tables(plan, check):
    """The one-column tables read together: [name, base, column, first cell, expected rows].
    hrDeviceTable's types column only when the first row is not the printer."""
    specs = []
    if check.hr == "types" and check.printer_row is None:
        specs.append(["hr", oids.HR_DEVICE, 2, "1", None])
    if plan.status:
        specs.append(["console", oids.PRT_CONSOLE, 2, "1.1", None])
    if plan.full:
        specs.append(["paths", oids.PRT_MEDIA_PATH, 9, "1.1", None])
    return specs


def is_ip(host):
    parts = host.split(".")
    return len(parts) == 4 and all(x.isdigit() for x in parts)


def scalars(plan, host, profile, cached, specs):
    """(OIDs of the one GET after the printer check, the colorant table's first cell or
    None, the ipAdEntIfIndex OID of host or None)."""
    want = [oids.PRT_SERIAL]
    if plan.counters:
        want.append(oids.PRT_LIFE_COUNT)
    if plan.full:
        want += [oids.PRT_MARK_TECH, oids.PRT_COLORANTS]
    if plan.status:
        want.append(oids.PRT_CONSOLE_LINES)   # the console table's row count: no overshoot
    colorant_cell = None
    if plan.supplies and not cached:
        colorant_cell = oids.PRT_COLORANT + ".4.1.1"   # is there a colorant table?
        want.append(colorant_cell)
    ip_key = None
    if is_ip(host):
        ip_key = oids.IP_AD_ENT_IF_INDEX + host
        want.append(ip_key)
    for o in profiles.oids(profile, counters=plan.counters):
        if o not in want:
            want.append(o)
    for _name, base, col, first, _ in specs:
        want.append(base + "." + str(col) + "." + first)
    return want, colorant_cell, ip_key


def size_console(specs, got):
    """The console's rows are known from prtConsoleNumberOfDisplayLines: walk exactly those."""
    lines = records.integer(got.get(oids.PRT_CONSOLE_LINES))
    for spec in specs:
        if spec[0] == "console" and lines is not None and 0 < lines <= MAX_ROWS:
            spec[4] = list(range(1, lines + 1))


def follow_ups(plan, ifidx, hr_cell, printer_row):
    """The last GET: the MAC of the interface carrying the address, the printer's
    hrDeviceDescr (when the model rules need it) and its status."""
    want = []
    if ifidx is not None:
        want.append(oids.IF_PHYS_ADDRESS + "." + str(ifidx))
    if hr_cell:
        want.append(hr_cell)
    if plan.status and printer_row is not None:
        want += status_oids(printer_row)
    return want


def status_oids(printer_row):
    """hrDeviceStatus, hrPrinterStatus, hrPrinterDetectedErrorState of the printer's row."""
    return [oids.HR_DEVICE + ".5." + str(printer_row), oids.HR_PRINTER_STATUS + str(printer_row),
            oids.HR_PRINTER_ERRORS + str(printer_row)]


# ENTITY-MIB's serial, model and firmware: asked only when nothing else gives a serial
ENTITY = [oids.ENT_SERIAL, oids.ENT_MODEL, oids.ENT_FIRMWARE]
