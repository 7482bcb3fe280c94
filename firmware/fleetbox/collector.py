"""Collector: one address in, one device record (shared/spec/device-record.md) out.

Standard MIBs first, vendor knowledge from compiled profiles (fleetbox.profiles). The
jobs are in their own modules: first contact and the printer check (fleetbox.probe),
what each scan kind asks (fleetbox.readplan), the table walks (fleetbox.walker), the
record's fields from the values read (fleetbox.assemble), what is remembered between
sweeps (fleetbox.devstate); a sweep of many addresses is fleetbox.sweep. This module
runs one collection through them, in the order of docs/collection.md.
"""
from fleetbox import assemble, ber, devstate, discovery, oids, probe, profiles, readplan, records, snmp
from fleetbox.port import ERROR, WARN, log, time_s
from fleetbox.readplan import KINDS  # noqa: F401  (the scan kinds, as callers know them)
from fleetbox.walker import Target, Walker


# Modules that few devices need, and only for a moment: web.py (~11 KB of heap) while a
# profile's web page is read, countertables.py (~3 KB) for makers that keep counters in
# tables. Imported when a collection needs one, dropped from the heap when none uses it
# any more (the next device imports it again from flash, a few ms), so a sweep's peak
# does not carry them. A module imported by someone else stays where it is.
_borrowed = {}   # name -> [collections using it, whether it was imported for them]


def _borrow(name):
    """One more collection uses fleetbox.<name> (the caller imports it)."""
    import sys
    use = _borrowed.get(name)
    if use is None:
        use = _borrowed[name] = [0, False]
    if not use[0]:
        use[1] = "fleetbox." + name not in sys.modules
    use[0] += 1


def _give_back(name):
    use = _borrowed[name]
    use[0] -= 1
    if not use[0] and use[1]:
        import sys
        import fleetbox
        sys.modules.pop("fleetbox." + name, None)
        if hasattr(fleetbox, name):
            delattr(fleetbox, name)


class Reading:
    """What one collection has read so far, from the printer check to the record."""

    def __init__(self, host, port, plan, sysv, t):
        self.host = host
        self.port = port
        self.plan = plan
        self.t = t
        oid = sysv.get(oids.SYS_OBJECT_ID)
        self.sys_object_id = oid if isinstance(oid, str) else None
        self.descr = records.text(sysv.get(oids.SYS_DESCR))
        self.sysv = sysv
        self.profile = None
        self.check = None        # probe.PrinterCheck
        self.cached = None       # supplies' static columns from flash (devstate.Statics)
        self.got = {}            # the GET after the printer check: {oid: value}
        self.follow = {}         # the follow-up GET
        self.tables = {}         # {table name: {row index: {column: value}}}
        self.ctx = None          # what profile rules read (fleetbox.profiles)
        self.printer_row = None
        self.mfp_row = None      # hrDeviceTable row of a scanner/fax/copier, when looked for
        self.ifidx = None
        self.colorant_cell = None
        self.need_entity = False
        self.serial = None
        self.sources = {}


class Collector:
    """Reads records over SNMP with a shared client; one instance per scan.

    `creds`: credentials (snmp.Credential) tried in order on a device's first answer and
    remembered per device in `state` (a devstate.DeviceState) or for this collector's
    life. `pace_ms`: the least time between two requests to one device.
    """

    def __init__(self, client, community=b"public", version="2c", profile_list=None, cred=None,
                 creds=None, state=None, pace_ms=0, statics=None, web_ports=None):
        self.client = client
        self.walker = Walker(client, pace_ms)
        self.web_ports = web_ports or {}   # profile page port -> port to use ({"80": 8080}; tests, odd sites)
        if creds:
            self.creds = list(creds)
        else:
            self.creds = [cred if cred is not None else snmp.Credential(version, community)]
        self.profiles = profile_list or []
        self.state = state if state is not None else devstate.NoMemory()
        self.pace_ms = pace_ms
        self.statics = statics      # devstate.Statics: supplies' static columns cached on flash
        self._cred_of = {}

    def extra_agent(self, rec):
        """(port, any_source_port) of the second agent the device's profile names
        (Canon: UDP 47545), or None; never for a record that came from that agent."""
        p = profiles.match(self.profiles, rec.get("sys_object_id"), rec.get("sys_descr"))
        ea = (p or {}).get("extra_agent")
        if not ea or rec.get("port") == ea.get("port"):
            return None
        return ea["port"], bool(ea.get("any_source_port"))

    # ------------------------------------------------------------------ the record
    async def collect(self, host, port=161, scan="full", probed=None, any_port=False):
        """The record of the printer at host:port, or None when it is no printer / silent.
        probed: (credential, system group {oid: value} or None: ask it again with that
        credential) when discovery already asked.
        any_port: accept replies from another port of host (a profile's extra_agent)."""
        r = await self._printer(host, port, readplan.ReadPlan(scan), probed, any_port)
        if r is None:
            return None
        await self._read(r)
        mac = await self._follow_up(r)
        manufacturer, model, serial, firmware, brand = assemble.identity(
            r.profile, r.ctx, r.follow, r.serial, r.need_entity, r.printer_row, r.sources)
        rec = assemble.base_record(host, port, r.sysv, mac, manufacturer, model, serial, firmware,
                                   r.sys_object_id, r.descr, brand)
        plan = r.plan
        counters = {}
        if plan.counters:
            assemble.life_count(r.got, counters, r.sources)
            profiles.counters(r.profile, r.ctx, counters, r.sources)
            await self.counter_tables(r.t, host, r.profile, r.got, counters, r.sources)
            rec["counters"] = counters
        if r.profile and r.profile.get("web") and plan.counters:
            await self.web_fill(r.t, r.profile, rec, r.sources, plan.full)
        supplies = await self._supplies(r, rec) if plan.supplies else []
        if plan.status:
            values = None
            if r.printer_row is not None:
                values = [r.follow.get(o) for o in readplan.status_oids(r.printer_row)]
            rec["status"] = assemble.status(values, r.tables.get("console") or {}, r.tables.get("alerts") or {})
        if plan.full:
            await self._shape(r, rec, supplies, counters)
        rec["collected_at"] = time_s() or None   # null until the box has learnt the time (spec)
        if plan.full and rec["collected_at"]:
            # when this box first collected the device: never passed off as its installation date
            rec["first_seen"] = self.state.first_seen(rec["serial"] or ("@" + host), rec["collected_at"])
        rec["scan"] = scan
        rec["snmp_version"] = r.t.cred.version
        rec["sources"] = r.sources
        # device memory: row counts, the MFP row, the counters (flagged when implausible)
        self.state.keep_rows(host, r.t.newrows or r.t.rows)
        if r.mfp_row is not None:
            self.state.keep_mfp_row(host, r.mfp_row)
        if plan.counters and counters:
            key = rec["serial"] or ("@" + host)
            _borrow("sanity")
            from fleetbox import sanity
            try:
                flags = sanity.check_counters(self.state.counters(key), counters)
            finally:
                _give_back("sanity")
            self.state.keep_counters(key, counters, rec["collected_at"])
            if flags:
                rec["counter_flags"] = flags
        return rec

    async def _printer(self, host, port, plan, probed, any_port):
        """First contact (unless discovery made it) and the printer check: a Reading, or
        None for a silent address or no printer (remembered: not asked again for a while)."""
        if probed is not None:
            sysv = probed[1]
            t = Target(host, port, probed[0])
            if isinstance(sysv, tuple):      # as the sweep queues it
                sysv = dict(zip(discovery.SYS_OIDS, sysv))
            elif sysv is None:
                # it answered discovery, whose values the sweep did not keep: ask again
                try:
                    sysv = await self.walker.get(t, oids.SYS_GROUP)
                except snmp.Timeout:
                    return None
        else:
            found = await probe.first_contact(self.walker, self.creds, host, port, any_port, self._cred_of,
                                              self.state)
            if found is None:
                return None
            t, sysv = found
        r = Reading(host, port, plan, sysv, t)
        r.profile = profiles.match(self.profiles, r.sys_object_id, r.descr)
        state = self.state
        t.rows = state.rows(host)
        if plan.supplies and self.statics is not None:
            r.cached = self.statics.load(host, port)
        soid = r.sys_object_id or "?"
        if state.not_a_printer_yet(host, soid):
            return None     # not a printer last time: asked again every NP_SKIP+1 sweeps
        lead = readplan.supplies_lead(plan, self.walker, t, r.cached,
                                      r.profile is not None or state.was_seen(host), state.lacks_printer_mib(host))
        r.check = await probe.check_printer(self.walker, t, r.profile, lead, plan.status)
        if r.check is None:
            state.not_a_printer(host, soid)
            return None
        state.a_printer(host)
        state.keep_printer_mib(host, r.check.mib)
        return r

    async def _read(self, r):
        """The GET of the scalars and first cells, the narrow tables, the wide tables."""
        plan, t = r.plan, r.t
        specs = readplan.narrow_tables(plan, r.check)
        ask, r.colorant_cell, ip_key = readplan.scalars(plan, r.host, r.profile, r.cached, specs)
        g = r.got = await self.walker.get(t, ask)
        readplan.size_console(specs, g)
        r.serial = records.text(g.get(oids.PRT_SERIAL))
        if r.serial:
            r.sources["serial"] = "prtGeneralSerialNumber"
        r.ifidx = records.integer(g.get(ip_key)) if ip_key else None
        r.tables = await self.walker.tables(t, specs, g)
        await self._wide_tables(r)
        r.printer_row = r.check.printer_row
        hr = r.tables.get("hr") or {}
        for idx in sorted(k for k in hr if isinstance(k, int)):
            if r.printer_row is None and hr[idx].get(2) == oids.HR_DEVICE_PRINTER:
                r.printer_row = idx

    async def _wide_tables(self, r):
        """Supplies (then the colorants they name) and alerts, each walked as one run of
        adjacent columns; the printer check told whether they exist."""
        t, tabs, cached = r.t, r.tables, r.cached
        first = r.check.first_row(oids.PRT_SUPPLIES)
        pre_read = r.check.supplies_pre
        r.check.supplies_pre = None
        if r.plan.supplies and first:
            if pre_read is not None:
                c = 9 if cached else 3     # as readplan.supplies_lead asked
                tabs["supplies"] = await self.walker.walk_table(t, "supplies", oids.PRT_SUPPLIES, c, 9, pre=pre_read)
            elif cached:
                tabs["supplies"] = await self.walker.walk_table(t, "supplies", oids.PRT_SUPPLIES, 9, 9,
                                                                first[0], first[1])
            else:
                tabs["supplies"] = await self.walker.walk_table(t, "supplies", oids.PRT_SUPPLIES, 3, 9)
            colorant = r.got.get(r.colorant_cell)
            if not cached and colorant is not None and not ber.is_exception(colorant):
                # the colorants the supplies name, and no more
                used = sorted(set(n for n in (records.integer(row.get(3)) for row in tabs["supplies"].values())
                                  if n is not None and 0 < n <= 255))
                if used:
                    tabs.update(await self.walker.tables(t, [["colorants", oids.PRT_COLORANT, 4, "1.1", used]], r.got))
        first = r.check.first_row(oids.ALERT_ROOT)
        if r.plan.status and first:
            tabs["alerts"] = await self.walker.walk_table(t, "alerts", oids.PRT_ALERT, 2, 8, first[0], first[1])

    async def _follow_up(self, r):
        """One GET: MAC, the printer's hrDeviceDescr and status, what profile rules still
        need (and, rarely, one more for a rule a step deeper). Returns the MAC: of the
        interface carrying the address, else the first one (a walk)."""
        hr_cell = None
        if r.printer_row is not None and r.check.hr == "types" and assemble.needs_hr(r.profile, r.got, r.descr):
            hr_cell = oids.HR_DEVICE + ".3." + str(r.printer_row)
        # "hr_later": profile rules wait for hrDeviceDescr instead of asking the OIDs after it
        r.ctx = ctx = {"get": r.got, "hr": r.check.printer_descr, "sysdescr": r.descr,
                       "hr_later": hr_cell is not None}
        follow = readplan.follow_ups(r.plan, r.ifidx, hr_cell, r.printer_row)
        lazy = profiles.pending(r.profile, ctx)
        follow += lazy
        r.need_entity = not r.serial and not (r.profile or {}).get("serial")
        if r.need_entity:
            follow += readplan.ENTITY
        f = r.follow = await self.walker.get(r.t, follow) if follow else {}
        for o in lazy:
            r.got[o] = f.get(o)
        if hr_cell:
            ctx["hr"] = records.text(f.get(hr_cell))
            ctx["hr_later"] = False
        more = profiles.pending(r.profile, ctx)
        if more:
            # A third rule deep: rare, one more small GET.
            r.got.update(await self.walker.get(r.t, more))
        mac = None
        if r.ifidx is not None:
            mac = records.mac_text(f.get(oids.IF_PHYS_ADDRESS + "." + str(r.ifidx)))
            if mac:
                r.sources["mac"] = "ifPhysAddress.%d (ipAdEntIfIndex)" % r.ifidx
        if mac is None:
            mac = await self.first_mac(r.t)
            if mac:
                r.sources["mac"] = "ifPhysAddress (first)"
        return mac

    async def first_mac(self, t):
        """The first non-empty 6-octet ifPhysAddress: the fallback when ipAdEntIfIndex does
        not lead to the interface carrying the address (row 1 is often loopback's)."""
        got = await self.walker.walk_roots(t, [oids.IF_ROOT], 2, 16, None, None, True)
        for _, v in sorted(got[0].items()):
            if records.mac_text(v):
                return records.mac_text(v)
        return None

    async def counter_tables(self, t, host, profile, got, counters, sources):
        """The profile's vendor counter tables and blobs, only for counters the standard MIBs
        and plain OIDs left unknown: a table costs a walk of its two columns (bounded rows)."""
        c = (profile or {}).get("counters") or {}
        if not (c.get("tables") or c.get("blobs")):
            return
        _borrow("countertables")
        from fleetbox import countertables
        try:
            for spec in c.get("tables", ()):
                if not countertables.wants(spec, counters):
                    continue
                base = spec["table"] + "."
                hint = t.rows.get("t" + spec["table"])
                if hint == 0:
                    continue    # not there last time (firmware updates do not add such tables often)
                types, values = await self.walker.walk_roots(
                    t, [base + str(spec["type"]), base + str(spec["value"])],
                    hint + 1 if hint else 2, min(spec.get("rows", 64), countertables.MAX_ROWS),
                    whole_index=True)
                t.newrows["t" + spec["table"]] = len(types)
                countertables.table(spec, types, values, counters, sources)
            for spec in c.get("blobs", ()):
                err = countertables.blob(spec, got.get(spec["oid"]), counters, sources)
                if err:
                    log("collector", WARN, "%s %s" % (host, err))
        finally:
            _give_back("countertables")

    async def web_fill(self, t, profile, rec, sources, full):
        """The fields SNMP left empty, from the profile's web pages (one page at a time per
        device): counters, and in a full scan serial/firmware/model too. A page that fails
        is logged and the record keeps what SNMP gave.

        A page is read for a missing total, serial, model or firmware; a missing
        by-function counter alone (a printer-only model has no copy counter) sends the box
        to the page only if the page gave it before (device memory), or the first time.
        """
        gave = self.state.web_fields(t.host)
        for page in profile["web"]:
            fields = {}
            go = False
            for name, rule in page["fields"].items():
                if name.startswith("counters."):
                    if name[9:] not in rec["counters"]:
                        fields[name] = rule
                        go = go or name == "counters.total" or gave is None or name in gave
                elif full and rec.get(name) is None:
                    fields[name] = rule
                    go = True
            if not go:
                continue
            await self.walker.pace()
            where = "web:%s:%s" % (page["scheme"], page["path"])
            _borrow("web")
            from fleetbox import web
            try:
                found, _ = await web.fetch(t.host, page, fields, self.web_ports)
            except web.WebError as e:
                log("collector", WARN, "%s %s: %s" % (t.host, where, e))
                found = getattr(e, "found", None) or {}
            except Exception as e:  # noqa: BLE001  a page's surprise must not cost the SNMP record
                log("collector", ERROR, "%s %s: %s %s" % (t.host, where, type(e).__name__, e))
                found = {}
            finally:
                _give_back("web")
            for name, v in found.items():
                if name.startswith("counters."):
                    rec["counters"][name[9:]] = v
                else:
                    rec[name] = v
                sources[name] = where
            self.state.keep_web_fields(t.host, set(gave or ()) | set(found))
            gave = self.state.web_fields(t.host)

    async def _supplies(self, r, rec):
        """The supplies table (static columns from flash when they still fit), cached again."""
        srows = r.tables.get("supplies") or {}
        cached = r.cached
        if cached and not assemble.statics_fit(cached, srows):
            # rows changed or a level rose (a new cartridge): read the static columns again
            more = await self.walker.columns(r.t, oids.PRT_SUPPLIES, (3, 5, 6, 7, 8), len(srows), len(srows))
            for idx, row in more.items():
                if idx in srows:
                    srows[idx].update(row)
            r.tables["colorants"] = await self.walker.columns(r.t, oids.PRT_COLORANT, (4,), len(srows) + 1, 32)
            cached = None
        supplies, colorants = assemble.supplies(srows, cached, r.tables.get("colorants") or {}, r.profile,
                                                r.plan.scan)
        if self.statics is not None and srows:
            self.statics.save(r.host, r.port, srows, colorants, cached["age"] + 1 if cached else 0)
        rec["supplies"] = supplies
        if srows:
            r.sources["supplies"] = "prtMarkerSuppliesTable"
        return supplies

    async def _shape(self, r, rec, supplies, counters):
        """Typology, technology, colour, duplex and installation date (full scans)."""
        _borrow("features")
        from fleetbox import features
        try:
            await self._features(features, r, rec, supplies, counters)
        finally:
            _give_back("features")

    async def _features(self, features, r, rec, supplies, counters):
        p = r.profile or {}
        sources = r.sources
        tech, colour, duplex = features.shape(r.profile, r.got, r.tables.get("paths") or {}, supplies,
                                              rec["manufacturer"], sources, rec["model"], counters)
        if duplex is None and p.get("duplex_words") and r.check.hr is not None:
            # the vendor names a duplex unit among its hrDeviceTable rows (Samsung)
            rows = await self.walker.columns(r.t, oids.HR_DEVICE, [3], 4, 32)
            texts = [(i, records.text(rows[i].get(3))) for i in sorted(k for k in rows if isinstance(k, int))]
            duplex = features.duplex(r.profile, None, None, None, sources, texts)
        typology, why = assemble.typology(p, rec["model"], r.descr, counters)
        if typology != "mfp" and not p.get("mfp_models"):
            # no vendor knowledge of its model names: look for a scanner or fax row
            hit = self.state.mfp_row(r.host)
            if hit is None:
                hit = r.mfp_row = await self.hr_mfp_row(r.t, r.check, r.printer_row)
            if hit:
                typology, why = "mfp", "hrDeviceDescr.%s" % hit
        if why:
            sources["typology"] = why
        install = features.install_date(r.profile, r.ctx, sources)
        rec.update({"typology": typology, "technology": tech or "unknown", "color": colour,
                    "duplex": duplex, "install_date": install})

    async def hr_mfp_row(self, t, check, printer_row):
        """Index of an hrDeviceTable row other than the printer's whose descr names a scanner,
        fax or copier (0: none). Walked once per device (the answer is remembered)."""
        if check.hr is None:
            return 0
        hr = await self.walker.columns(t, oids.HR_DEVICE, [3], 4, 32)
        for idx in sorted(k for k in hr if isinstance(k, int)):
            if idx != printer_row and records.has_mfp_words(records.text(hr[idx].get(3))):
                return idx
        return 0
