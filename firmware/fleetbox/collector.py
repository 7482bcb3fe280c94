"""Collector: one address in, one device record (shared/spec/device-record.md) out; sweep().

Standard MIBs first (SNMPv2-MIB, IF-MIB, IP-MIB, HOST-RESOURCES-MIB, ENTITY-MIB,
Printer-MIB), vendor knowledge from compiled profiles (fleetbox.profiles), decoding in
fleetbox.records. Few bytes on the LAN: scalars in one GET, tables as GETBULK of just
the needed columns, sized by a first pass over one narrow column (or by the row count
remembered from the last scan).
"""
import asyncio

from fleetbox import ber, countertables, discovery, profiles, records, snmp
from fleetbox import port as _port
from fleetbox.port import time_s

SYS = "1.3.6.1.2.1.1."
SYS_DESCR = SYS + "1.0"
SYS_OBJECT_ID = SYS + "2.0"
SYS_UPTIME = SYS + "3.0"
SYS_CONTACT = SYS + "4.0"
SYS_NAME = SYS + "5.0"
SYS_LOCATION = SYS + "6.0"
IF_PHYS_ADDRESS = "1.3.6.1.2.1.2.2.1.6"
IP_AD_ENT_IF_INDEX = "1.3.6.1.2.1.4.20.1.2."
HR_DEVICE = "1.3.6.1.2.1.25.3.2.1"
HR_PRINTER_STATUS = "1.3.6.1.2.1.25.3.5.1.1."
HR_PRINTER_ERRORS = "1.3.6.1.2.1.25.3.5.1.2."
HR_DEVICE_PRINTER = "1.3.6.1.2.1.25.3.1.5"
ENT_PHYSICAL = "1.3.6.1.2.1.47.1.1.1.1."
ENT_SERIAL = ENT_PHYSICAL + "11.1"
ENT_MODEL = ENT_PHYSICAL + "13.1"
ENT_FIRMWARE = ENT_PHYSICAL + "9.1"
PRINTER_MIB = "1.3.6.1.2.1.43"
PRT_SERIAL = "1.3.6.1.2.1.43.5.1.1.17.1"
PRT_CONSOLE_LINES = "1.3.6.1.2.1.43.5.1.1.11.1"
PRT_LIFE_COUNT = "1.3.6.1.2.1.43.10.2.1.4.1.1"
PRT_MARK_TECH = "1.3.6.1.2.1.43.10.2.1.2.1.1"
PRT_COLORANTS = "1.3.6.1.2.1.43.10.2.1.6.1.1"
PRT_SUPPLIES = "1.3.6.1.2.1.43.11.1.1"
PRT_COLORANT = "1.3.6.1.2.1.43.12.1.1"
PRT_MEDIA_PATH = "1.3.6.1.2.1.43.13.4.1"
PRT_CONSOLE = "1.3.6.1.2.1.43.16.5.1"
PRT_ALERT = "1.3.6.1.2.1.43.18.1.1"

IF_ROOT = IF_PHYS_ADDRESS
SUPPLY_ROOT = PRT_SUPPLIES + ".9"
ALERT_ROOT = PRT_ALERT + ".2"
KINDS = ("discovery", "full", "counters", "supplies", "parts", "alerts")
CONSUMABLES = ("toner", "ink")
SLEEP_WORDS = ("sleep", "energy sav", "power sav", "low power")
MAX_ROWS = 64
REPS_MAX = 32      # GETBULK max-repetitions in a table walk (agents trim a reply that gets too big)
QUIET_MAX = 8      # most sweeps a silent, once-seen device is left alone (doubling from 1)
XS_SKIP = 8        # sweeps that skip a profile's extra agent after it stayed silent
NP_SKIP = 15       # sweeps that take a device found not to be a printer at its word
GC_EVERY = 8192    # bytes allocated between garbage collections during a sweep (small heaps)


class Collector:
    """Reads records over SNMP with a shared client; one instance per scan.

    `creds`: credentials (snmp.Credential) tried in order on a device's first answer and
    remembered per device in `state` (a devstate.DeviceState) or for this collector's
    life. `pace_ms`: the least time between two requests to one device.
    """

    def __init__(self, client, community=b"public", version="2c", profile_list=None, cred=None,
                 creds=None, state=None, pace_ms=0, statics=None, web_ports=None):
        self.client = client
        self.web_ports = web_ports or {}   # profile page port -> port to use ({"80": 8080}; tests, odd sites)
        if creds:
            self.creds = list(creds)
        else:
            self.creds = [cred if cred is not None else snmp.Credential(version, community)]
        self.profiles = profile_list or []
        self.state = state
        self.pace_ms = pace_ms
        self.statics = statics      # devstate.Statics: supplies' static columns cached on flash
        self._cred_of = {}

    # ------------------------------------------------------------------ transport
    async def _pace(self):
        if self.pace_ms:
            await asyncio.sleep(self.pace_ms / 1000)

    async def _get(self, dev, oids):
        await self._pace()
        got = await self.client.get(dev["host"], oids, port=dev["port"], cred=dev["cred"],
                                    any_port=dev.get("any_port", False))
        return dict(got)

    async def _getnext(self, dev, oids):
        await self._pace()
        return await self.client.getnext(dev["host"], oids, port=dev["port"], cred=dev["cred"],
                                         any_port=dev.get("any_port", False))

    async def _bulk(self, dev, oids, reps, nr=0):
        """GETBULK, or GETNEXT on v1 / agents that refuse GETBULK (then one row per request).
        `nr` non-repeaters first (a GETNEXT each), then the repeated OIDs."""
        if dev["cred"].version != "1" and not dev.get("nobulk"):
            await self._pace()
            while True:
                try:
                    return await self.client.getbulk(dev["host"], oids, nr, reps, port=dev["port"],
                                                     cred=dev["cred"],
                                                     any_port=dev.get("any_port", False)), len(oids)
                except snmp.Timeout:
                    raise
                except snmp.SnmpError as e:
                    if e.status != snmp.TOO_BIG or reps == 1:
                        dev["nobulk"] = True
                        break
                    reps //= 2
        return await self._getnext(dev, oids), len(oids)

    async def walk_roots(self, dev, roots, reps, limit=MAX_ROWS, starts=None, seeds=None, force=False,
                         expect=None, whole_index=False):
        """Several columns (any tables) at once: [{row index (last arc): value}] per root.

        One GETBULK carries every root still going; a root stops at the end of its
        subtree, and after `limit` rows. `starts`/`seeds`: resume each root after an OID
        already read (None in starts: that root is known to be absent). `expect`: per root,
        None or the sorted row indexes it is known to hold: it stops at the last of them
        and the next request asks only for as many rows as are missing (no overshoot).
        `whole_index`: rows keyed by the whole index after the root ("2.1") instead of its
        last arc, for tables indexed by more than one arc whose last arcs repeat.
        """
        cur = list(starts) if starts else list(roots)
        out = seeds if seeds else [{} for _ in roots]
        expect = expect or [None] * len(roots)
        active = [i for i in range(len(roots)) if cur[i] is not None]
        if dev.get("choked") and not force:
            return out   # this agent already choked on a walk: no more storms for it
        while active:
            try:
                vbs, k = await self._bulk(dev, [cur[i] for i in active], reps)
            except snmp.Timeout:
                # The agent answered before: some rows make it choke (seen on replayed and real
                # agents alike). Keep what was read rather than insist on a struggling agent.
                dev["choked"] = True
                break
            if not vbs:
                break
            ended = []
            for j, (oid, val) in enumerate(vbs):
                i = active[j % k]
                if i in ended:
                    continue
                root = roots[i]
                if (val is ber.END_OF_MIB_VIEW or not oid.startswith(root + ".")
                        or ber.oid_compare(oid, cur[i]) <= 0):
                    ended.append(i)
                    continue
                cur[i] = oid
                last = oid[len(root) + 1:] if whole_index else oid.rsplit(".", 1)[1]
                key = int(last) if last.isdigit() else last
                out[i][key] = val
                if len(out[i]) >= limit or (expect[i] and key == expect[i][-1]):
                    ended.append(i)
            active = [i for i in active if i not in ended]
            # Grow gently: past its end a column returns the next one's values (overshoot).
            grow = 4 if reps < 4 else (8 if reps < 8 else 16)
            reps = 1
            for i in active:
                if expect[i]:
                    last = cur[i].rsplit(".", 1)[1]
                    n = len([x for x in expect[i] if not last.isdigit() or x > int(last)])
                else:
                    n = grow
                reps = n if n > reps else reps
        return out

    def table_reps(self, dev, name, first, last):
        """max-repetitions of a table walk's first request: the rows of the last scan times
        the columns, plus one to see the end; 8 the first time."""
        hint = dev["rows"].get(name)
        if isinstance(hint, int) and hint > 0:
            return min(REPS_MAX, hint * (last - first + 1) + 1)
        return 8

    async def walk_table(self, dev, name, base, first, last, start=None, seed=None, limit=MAX_ROWS,
                         pre=None):
        """Columns first..last of the table at `base` as one subtree: {row index: {column: value}}.

        Adjacent columns walked in one stream of GETBULKs waste nothing at the seams; once
        the first column has ended its row count is known and the next request asks for
        exactly what remains. While every column repeats the first one's row indexes the
        walk stops at the last cell; otherwise it asks one object more to see the end.
        `start`/`seed`: a cell already read (the walk goes on after it); `pre`: the
        answer to the first request, already asked (is_printer's GETBULK);
        dev["rows"][name]: the row count of the last scan.
        """
        prefix = base + "."
        rows, per = {}, {}
        keys = []          # row indexes of the first column seen, in order
        regular = True
        cur = start or prefix + str(first)
        if start and seed is not None:
            col, idx = _cell(start, prefix)
            rows[idx] = {col: seed}
            per[col] = 1
            keys.append(idx)
        reps = self.table_reps(dev, name, first, last)
        vbs = pre
        while not dev.get("choked") or vbs is not None:
            if vbs is None:
                try:
                    vbs, _ = await self._bulk(dev, [cur], reps)
                except snmp.Timeout:
                    dev["choked"] = True   # as in walk_roots: keep what was read
                    break
            col = None
            for oid, val in vbs:
                if (val is ber.END_OF_MIB_VIEW or not oid.startswith(prefix)
                        or ber.oid_compare(oid, cur) <= 0):
                    col = None
                    break
                col, idx = _cell(oid, prefix)
                if col is None or col > last:
                    col = None
                    break
                cur = oid
                n = per.get(col, 0) + 1
                if n > limit:
                    col = None
                    break
                per[col] = n
                rows.setdefault(idx, {})[col] = val
                if len(per) == 1:
                    keys.append(idx)
                elif n > len(keys) or keys[n - 1] != idx:
                    regular = False
            if col is None or not vbs:
                break
            if len(per) > 1:
                left = len(keys) - per[col]
                left = (left if left > 0 else 0) + (last - col) * len(keys)
                if regular and not left:
                    break      # the last column's last row: the table is read
                reps = min(REPS_MAX, left + (0 if regular else 1))
            else:
                reps = min(REPS_MAX, reps * 2)
            vbs = None
        dev.setdefault("newrows", {})[name] = len(rows)
        return rows

    async def columns(self, dev, base, cols, reps, limit=MAX_ROWS, expect=None):
        """{row index: {column: value}} for `cols` of the table at `base`."""
        got = await self.walk_roots(dev, [base + "." + str(c) for c in cols], reps, limit, expect=expect)
        rows = {}
        for c, vals in zip(cols, got):
            for idx, v in vals.items():
                rows.setdefault(idx, {})[c] = v
        return rows

    async def tables(self, dev, specs, got):
        """Narrow one-column tables read together. specs: [(name, base, column, first, expect)].

        `got` holds the answers to a GET of each table's likely first cell (`first`, e.g.
        "1.1"), asked with the scalars: a table whose first cell is missing is absent (the
        object past an absent table can be big: asking a cell is cheaper than a GETNEXT),
        one whose cell is there is walked on from it in shared GETBULKs. `expect`: the row
        indexes known to exist, or None. Returns {name: {row index: {column: value}}}.
        """
        roots, starts, seeds, expects = [], [], [], []
        reps = 3
        for name, base, col, first, expect in specs:
            root = base + "." + str(col)
            cell = root + "." + first
            v = got.get(cell)
            seed, start = {}, None
            if v is not None and not ber.is_exception(v):
                last = first.rsplit(".", 1)[-1]
                seed[int(last)] = v
                if not (expect and expect[-1] == int(last)):
                    start = cell
            roots.append(root)
            starts.append(start)
            seeds.append(seed)
            expects.append(expect)
            n = dev["rows"].get(name)
            if expect:
                n = len(expect) - 1         # the rows after the first, exactly
            if isinstance(n, int) and n > reps:
                reps = n     # (a remembered count: the rows after the first, plus one to see the end)
        walked = await self.walk_roots(dev, roots, reps, MAX_ROWS, starts, seeds, expect=expects)
        out = {}
        for (name, _, col, _, _), vals in zip(specs, walked):
            rows = {}
            for idx, v in vals.items():
                rows[idx] = {col: v}
            dev.setdefault("newrows", {})[name] = len(rows)
            out[name] = rows
        return out

    async def hr_mfp_row(self, dev, printer_idx):
        """Index of an hrDeviceTable row other than the printer's whose descr names a scanner,
        fax or copier (0: none). Walked once per device (the answer is remembered)."""
        if dev["hr"] is None:
            return 0
        hr = await self.columns(dev, HR_DEVICE, [3], 4, 32)
        for idx in sorted(k for k in hr if isinstance(k, int)):
            if idx != printer_idx and records.has_mfp_words(records.text(hr[idx].get(3))):
                return idx
        return 0

    async def first_mac(self, dev):
        """The first non-empty 6-octet ifPhysAddress: the fallback when ipAdEntIfIndex does
        not lead to the interface carrying the address (row 1 is often loopback's)."""
        got = await self.walk_roots(dev, [IF_ROOT], 2, 16, None, None, True)
        for _, v in sorted(got[0].items()):
            if records.mac_text(v):
                return records.mac_text(v)
        return None

    async def counter_tables(self, dev, host, profile, got, counters, sources):
        """The profile's vendor counter tables and blobs, only for counters the standard MIBs
        and plain OIDs left unknown: a table costs a walk of its two columns (bounded rows)."""
        c = (profile or {}).get("counters") or {}
        for spec in c.get("tables", ()):
            if not countertables.wants(spec, counters):
                continue
            base = spec["table"] + "."
            hint = dev["rows"].get("t" + spec["table"])
            if hint == 0:
                continue    # not there last time (firmware updates do not add such tables often)
            types, values = await self.walk_roots(
                dev, [base + str(spec["type"]), base + str(spec["value"])],
                hint + 1 if hint else 2, min(spec.get("rows", 64), countertables.MAX_ROWS),
                whole_index=True)
            dev.setdefault("newrows", {})["t" + spec["table"]] = len(types)
            countertables.table(spec, types, values, counters, sources)
        for spec in c.get("blobs", ()):
            err = countertables.blob(spec, got.get(spec["oid"]), counters, sources)
            if err:
                print("collector: %s %s" % (host, err))

    async def web_fill(self, dev, profile, rec, sources, full):
        """The fields SNMP left empty, from the profile's web pages (one page at a time per
        device): counters, and in a full scan serial/firmware/model too. A page that fails
        is logged and the record keeps what SNMP gave.

        A page is read for a missing total, serial, model or firmware; a missing
        by-function counter alone (a printer-only model has no copy counter) sends the box
        to the page only if the page gave it before (device state "wg"), or the first time.
        """
        from fleetbox import web   # ~18 KB, imported only once a page is needed
        st = self.state.get("@" + dev["host"]) if self.state is not None else {}
        gave = st.get("wg")
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
            await self._pace()
            where = "web:%s:%s" % (page["scheme"], page["path"])
            try:
                found, _ = await web.fetch(dev["host"], page, fields, self.web_ports)
            except web.WebError as e:
                print("collector: %s %s: %s" % (dev["host"], where, e))
                found = getattr(e, "found", None) or {}
            except Exception as e:  # noqa: BLE001  a page's surprise must not cost the SNMP record
                print("collector: %s %s: %s %s" % (dev["host"], where, type(e).__name__, e))
                found = {}
            for name, v in found.items():
                if name.startswith("counters."):
                    rec["counters"][name[9:]] = v
                else:
                    rec[name] = v
                sources[name] = where
            if self.state is not None:
                gave = sorted(set(gave or ()) | set(found))[:16]
                self.state.update("@" + dev["host"], wg=gave)

    # ------------------------------------------------------------------ discovery
    async def probe(self, host, port, any_port=False):
        """First contact: the credential that answers and the system group, or None."""
        order = list(range(len(self.creds)))
        known = self._cred_of.get(host)
        if known is None and self.state is not None:
            known = self.state.get("@" + host).get("cred")
        if known is not None and 0 <= known < len(self.creds):
            order.remove(known)
            order.insert(0, known)
        for i in order:
            dev = {"host": host, "port": port, "cred": self.creds[i], "any_port": any_port}
            try:
                got = await self._get(dev, [SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_CONTACT,
                                            SYS_NAME, SYS_LOCATION])
            except snmp.Timeout:
                continue
            except snmp.SnmpError as e:
                if dev["cred"].version == "3":
                    print("collector: %s:%d: %s" % (host, port, e))   # wrong user, password...
                continue
            if len(self._cred_of) > 1024:
                self._cred_of.clear()
            self._cred_of[host] = i
            if self.state is not None and known != i:
                self.state.update("@" + host, cred=i)
            dev["sys"] = got
            return dev
        return None

    async def is_printer(self, dev, sys_object_id, profile, lead=None, alerts=True):
        """Printer-MIB present, or a printer maker's agent listing an hrDevicePrinter.

        One request: the first hrDeviceType, supply level and (with `alerts`: scans that
        read status) alert, by GETNEXT. The Printer-MIB's mandatory groups include tables
        after prtMarkerSuppliesLevel (media paths, channels, interpreters, console,
        alerts), so where the supplies or alerts GETNEXT lands tells whether it is there.
        `lead`: (OID, max-repetitions) of the supplies walk's first request, which then
        rides along as the repeated part of a GETBULK (one exchange less per printer);
        dev["supplies_pre"] keeps its answer.
        """
        nxt = None
        first = [HR_DEVICE + ".2", ALERT_ROOT] if alerts else [HR_DEVICE + ".2"]
        k = len(first)
        if lead and dev["cred"].version != "1":
            vbs, _ = await self._bulk(dev, first + [lead[0]], lead[1], k)
            if not dev.get("nobulk") and len(vbs) >= k:
                pre = vbs[k:]
                dev["supplies_pre"] = pre
                nxt = [vbs[0], pre[0] if pre else ("", None)] + vbs[1:k]
        if nxt is None:
            nxt = await self._getnext(dev, [HR_DEVICE + ".2", SUPPLY_ROOT] + first[1:])
        # The first rows of tables whose first index varies, for collect() to go on from.
        dev["next"] = nxt[1:]
        # Where the first GETNEXT lands tells how much of the hrDeviceTable exists.
        hr = nxt[0]
        hr_next = hr[0] if not ber.is_exception(hr[1]) else ""
        dev["hr"] = "types" if hr_next.startswith(HR_DEVICE + ".2.") else (
            "descr" if hr_next.startswith(HR_DEVICE + ".") else None)
        last = hr_next.rsplit(".", 1)[-1]
        if dev["hr"] == "types" and hr[1] == HR_DEVICE_PRINTER and last.isdigit():
            dev["hr_printer"] = int(last)   # usually row 1: no walk
        elif dev["hr"] == "descr" and last.isdigit():
            # no types column: the first row stands for the printer, and its descr is here
            dev["hr_printer"] = int(last)
            dev["hr_descr"] = records.text(hr[1])
        for oid, v in nxt[1:3]:
            if oid.startswith(PRINTER_MIB + ".") and not ber.is_exception(v):
                dev["mib"] = True
                return True
        # Without the Printer-MIB only a printer maker's own agent with an hrDevicePrinter
        # counts: a Windows server lists its print queues as hrDevicePrinter too.
        if profile is None:
            return False
        if dev["hr"] != "types":
            return False
        if hr[1] == HR_DEVICE_PRINTER:
            return True
        rows = await self.columns(dev, HR_DEVICE, [2], 4, 32)
        for r in rows.values():
            if r.get(2) == HR_DEVICE_PRINTER:
                return True
        return False

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
        probed: (credential, system group {oid: value}) when discovery already asked.
        any_port: accept replies from another port of host (a profile's extra_agent)."""
        if scan not in KINDS:
            raise ValueError("unknown scan kind %r" % scan)
        if probed is not None:
            sysv = probed[1]
            if isinstance(sysv, tuple):      # as sweep() queues it
                sysv = dict(zip(discovery.SYS_OIDS, sysv))
            dev = {"host": host, "port": port, "cred": probed[0], "sys": sysv}
        else:
            dev = await self.probe(host, port, any_port)
        if dev is None:
            return None
        sysv = dev.pop("sys")
        oid = sysv.get(SYS_OBJECT_ID)
        sys_object_id = oid if isinstance(oid, str) else None
        descr = records.text(sysv.get(SYS_DESCR))
        profile = profiles.match(self.profiles, sys_object_id, descr)
        full = scan == "full"
        want_counters = scan in ("full", "counters")
        want_supplies = scan in ("full", "supplies", "parts")
        want_status = scan in ("full", "alerts")
        sources = {}
        pre = self.state.get("@" + host) if self.state is not None else {}
        dev["rows"] = pre.get("rows") or {}
        cached = None
        if want_supplies and self.statics is not None:
            cached = self.statics.load(host, port)
        soid = sys_object_id or "?"
        if pre.get("np") == soid and pre.get("nps", 0) > 0 and not pre.get("seen"):
            self.state.update("@" + host, nps=pre["nps"] - 1)
            return None     # not a printer last time: asked again every NP_SKIP+1 sweeps
        lead = None
        if want_supplies and (profile is not None or pre.get("seen")) and not pre.get("nomib"):
            # a printer maker's agent: the supplies walk's first request rides along, from
            # prtMarkerSuppliesColorantIndex (3), or only the levels (9) when the static
            # columns are cached
            c = 9 if cached else 3
            lead = (PRT_SUPPLIES + "." + str(c), self.table_reps(dev, "supplies", c, 9))
        if not await self.is_printer(dev, sys_object_id, profile, lead, want_status):
            if self.state is not None and not pre.get("seen"):
                # (a printer seen before that looks otherwise now, e.g. while booting, is
                # checked again every sweep)
                self.state.update("@" + host, np=soid, nps=NP_SKIP)
            return None
        if self.state is not None and pre.get("np"):
            self.state.update("@" + host, np=None, nps=0)
        if self.state is not None and bool(pre.get("nomib")) != (not dev.get("mib")):
            self.state.update("@" + host, nomib=not dev.get("mib") or None)

        specs = []
        # hrDeviceTable: only the printer's row is read (its descr and status in the follow-up
        # GET); the types column is walked only when the first row is not the printer.
        printer_idx = dev.get("hr_printer")
        if dev["hr"] == "types" and printer_idx is None:
            specs.append(["hr", HR_DEVICE, 2, "1", None])
        if want_status:
            specs.append(["console", PRT_CONSOLE, 2, "1.1", None])
        if full:
            specs.append(["paths", PRT_MEDIA_PATH, 9, "1.1", None])

        scalars = [PRT_SERIAL]
        if want_counters:
            scalars.append(PRT_LIFE_COUNT)
        if full:
            scalars += [PRT_MARK_TECH, PRT_COLORANTS]
        if want_status:
            scalars.append(PRT_CONSOLE_LINES)   # the console table's row count: no overshoot
        colorant_cell = None
        if want_supplies and not cached:
            colorant_cell = PRT_COLORANT + ".4.1.1"   # is there a colorant table?
            scalars.append(colorant_cell)
        ip_key = None
        if _is_ip(host):
            ip_key = IP_AD_ENT_IF_INDEX + host
            scalars.append(ip_key)
        for o in profiles.oids(profile, counters=want_counters):
            if o not in scalars:
                scalars.append(o)
        for name, base, col, first, _ in specs:
            scalars.append(base + "." + str(col) + "." + first)
        g = await self._get(dev, scalars)
        lines = records.integer(g.get(PRT_CONSOLE_LINES))
        for spec in specs:
            if spec[0] == "console" and lines is not None and 0 < lines <= MAX_ROWS:
                spec[4] = list(range(1, lines + 1))

        serial = records.text(g.get(PRT_SERIAL))
        if serial:
            sources["serial"] = "prtGeneralSerialNumber"
        ifidx = records.integer(g.get(ip_key)) if ip_key else None
        t = await self.tables(dev, specs, g)
        # The two wide tables, each walked as one run of adjacent columns (walk_table); the
        # first GETNEXT told whether they exist.
        first = _next_cell(dev, PRT_SUPPLIES)
        pre_read = dev.pop("supplies_pre", None)
        if want_supplies and first:
            c = 9 if cached else 3
            if pre_read is not None:
                t["supplies"] = await self.walk_table(dev, "supplies", PRT_SUPPLIES, c, 9, pre=pre_read)
            elif cached:
                t["supplies"] = await self.walk_table(dev, "supplies", PRT_SUPPLIES, 9, 9, first[0], first[1])
            else:
                t["supplies"] = await self.walk_table(dev, "supplies", PRT_SUPPLIES, 3, 9)
            colorant = g.get(colorant_cell)
            if not cached and colorant is not None and not ber.is_exception(colorant):
                # the colorants the supplies name, and no more
                used = sorted(set(n for n in (records.integer(r.get(3)) for r in t["supplies"].values())
                                  if n is not None and 0 < n <= 255))
                if used:
                    t.update(await self.tables(dev, [["colorants", PRT_COLORANT, 4, "1.1", used]], g))
        first = _next_cell(dev, ALERT_ROOT)
        if want_status and first:
            t["alerts"] = await self.walk_table(dev, "alerts", PRT_ALERT, 2, 8, first[0], first[1])
        hr = t.get("hr") or {}
        for idx in sorted(k for k in hr if isinstance(k, int)):
            if printer_idx is None and hr[idx].get(2) == HR_DEVICE_PRINTER:
                printer_idx = idx
        hr_descr = dev.get("hr_descr")
        hr_cell = None
        if printer_idx is not None and dev["hr"] == "types" and _needs_hr(profile, g, descr):
            hr_cell = HR_DEVICE + ".3." + str(printer_idx)
        # "hr_later": profile rules wait for hrDeviceDescr instead of asking the OIDs after it
        ctx = {"get": g, "hr": hr_descr, "sysdescr": descr, "hr_later": hr_cell is not None}

        # Follow-ups in one GET: the MAC of the interface carrying the address, the printer's
        # hrDeviceDescr and status.
        follow = []
        if ifidx is not None:
            follow.append(IF_PHYS_ADDRESS + "." + str(ifidx))
        if hr_cell:
            follow.append(hr_cell)
        if want_status and printer_idx is not None:
            follow += [HR_DEVICE + ".5." + str(printer_idx), HR_PRINTER_STATUS + str(printer_idx),
                       HR_PRINTER_ERRORS + str(printer_idx)]
        lazy = profiles.pending(profile, ctx)
        follow += lazy
        need_entity = not serial and not (profile or {}).get("serial")
        if need_entity:
            follow += [ENT_SERIAL, ENT_MODEL, ENT_FIRMWARE]
        f = await self._get(dev, follow) if follow else {}
        for o in lazy:
            g[o] = f.get(o)
        if hr_cell:
            ctx["hr"] = records.text(f.get(hr_cell))
            ctx["hr_later"] = False
        more = profiles.pending(profile, ctx)
        if more:
            # A third rule deep: rare, one more small GET.
            g.update(await self._get(dev, more))
        mac = None
        if ifidx is not None:
            mac = records.mac_text(f.get(IF_PHYS_ADDRESS + "." + str(ifidx)))
            if mac:
                sources["mac"] = "ifPhysAddress.%d (ipAdEntIfIndex)" % ifidx
        if mac is None:
            mac = await self.first_mac(dev)
            if mac:
                sources["mac"] = "ifPhysAddress (first)"

        # Identification.
        manufacturer = profile["vendor"] if profile else None
        if profile:
            sources["manufacturer"] = "profile %s" % profile["vendor"]
        if not serial:
            serial = records.text(f.get(ENT_SERIAL)) if need_entity else None
            if serial:
                sources["serial"] = "entPhysicalSerialNum"
            else:
                serial, src = profiles.first_text(profile, "serial", ctx)
                if serial:
                    sources["serial"] = src
        model, src = derive_model(profile, ctx, printer_idx, f.get(ENT_MODEL) if need_entity else None)
        if model:
            sources["model"] = src
        firmware, src = profiles.first_text(profile, "firmware", ctx)
        if not firmware and need_entity:
            firmware, src = records.text(f.get(ENT_FIRMWARE)), "entPhysicalFirmwareRev"
        if firmware:
            sources["firmware"] = src
        brand, src = profiles.first_text(profile, "brand", ctx)
        uptime = records.integer(sysv.get(SYS_UPTIME))
        rec = {
            "ip": host,
            "port": port,
            "mac": mac,
            "hostname": records.text(sysv.get(SYS_NAME)),
            "manufacturer": manufacturer,
            "model": model,
            "serial": serial,
            "firmware": firmware,
            "location": records.text(sysv.get(SYS_LOCATION)),
            "contact": records.text(sysv.get(SYS_CONTACT)),
            "sys_object_id": sys_object_id,
            "sys_descr": descr,
            "uptime_s": uptime // 100 if uptime is not None else None,
        }
        if brand and manufacturer and brand.lower() != manufacturer.lower():
            rec["brand"] = brand
            sources["brand"] = src

        counters = {}
        if want_counters:
            total = records.integer(g.get(PRT_LIFE_COUNT))
            if total is not None and total >= 0:
                counters["total"] = total
                sources["counters.total"] = "prtMarkerLifeCount"
            profiles.counters(profile, ctx, counters, sources)
            await self.counter_tables(dev, host, profile, g, counters, sources)
            rec["counters"] = counters
        if profile and profile.get("web") and want_counters:
            await self.web_fill(dev, profile, rec, sources, full)
            serial = rec["serial"]

        p = profile or {}
        supplies = []
        if want_supplies:
            colorants = {}
            srows = t.get("supplies") or {}
            if cached and not _statics_fit(cached, srows):
                # rows changed or a level rose (a new cartridge): read the static columns again
                more = await self.columns(dev, PRT_SUPPLIES, (3, 5, 6, 7, 8), len(srows), len(srows))
                for idx, r in more.items():
                    if idx in srows:
                        srows[idx].update(r)
                t["colorants"] = await self.columns(dev, PRT_COLORANT, (4,), len(srows) + 1, 32)
                cached = None
            if cached:
                for idx, r in srows.items():
                    kind, desc, unit, mx, colour, _ = cached["rows"][str(idx)]
                    r.update({5: kind, 6: desc, 7: unit, 8: mx, 3: colour})   # colour by name
            else:
                for idx, r in (t.get("colorants") or {}).items():
                    colorants[idx] = records.text(r.get(4), True)
                for r in srows.values():
                    if 6 in r:
                        r[6] = records.text(r[6], True)
            if self.statics is not None and srows:
                self.statics.save(host, port, srows, colorants, cached["age"] + 1 if cached else 0)
            special = None
            if p.get("supply_special"):
                special = {}
                for lv, st in p["supply_special"]:
                    special[lv] = st
            supplies = records.build_supplies(srows, colorants, special,
                                              p.get("low_percent", records.LOW_PERCENT))
            if scan == "parts":
                supplies = [s for s in supplies if s["kind"] not in CONSUMABLES]
            rec["supplies"] = supplies
            if srows:
                sources["supplies"] = "prtMarkerSuppliesTable"

        if want_status:
            status = {"device": None, "printer": None, "errors": [], "display": [], "alerts": []}
            if printer_idx is not None:
                status["device"] = records.DEVICE_STATUS.get(
                    records.integer(f.get(HR_DEVICE + ".5." + str(printer_idx))), "unknown")
                status["printer"] = records.PRINTER_STATUS.get(
                    records.integer(f.get(HR_PRINTER_STATUS + str(printer_idx))), "unknown")
                status["errors"] = records.decode_errors(f.get(HR_PRINTER_ERRORS + str(printer_idx)))
            for idx, r in sorted((t.get("console") or {}).items()):
                line = records.text(r.get(2), True)
                if line:
                    status["display"].append(line)
            status["alerts"] = records.decode_alerts(t.get("alerts") or {})
            text_seen = " ".join(status["display"]).lower()
            status["power"] = "on"
            for w in SLEEP_WORDS:
                if w in text_seen:
                    status["power"] = "sleep"
            for a in status["alerts"]:
                if a["code"] == "subunitPowerSaver":
                    status["power"] = "sleep"
            # docs/collection.md: a sleeping printer is "asleep", never "down"
            status["reachability"] = "asleep" if status["power"] == "sleep" else "reachable"
            rec["status"] = status

        if full:
            paths = t.get("paths") or {}
            duplex = None
            if paths:
                duplex = any(records.integer(r.get(9)) in records.DUPLEX_PATHS for r in paths.values())
                sources["duplex"] = "prtMediaPathType"
            ncol = records.integer(g.get(PRT_COLORANTS))
            colour = None
            if ncol is not None and ncol > 0:
                colour = ncol > 1
                sources["color"] = "prtMarkerProcessColorants"
            elif supplies:
                colour = any(s["color"] not in (None, "black") or records.colour_words(s["description"])
                             for s in supplies if s["kind"] in CONSUMABLES)
                sources["color"] = "supplies"
            tech = records.MARK_TECH.get(records.integer(g.get(PRT_MARK_TECH)))
            if tech:
                sources["technology"] = "prtMarkerMarkTech"
            elif p.get("technology"):
                tech = p["technology"]
                sources["technology"] = "profile %s" % manufacturer
            typology, why = _typology(p, model, descr, counters)
            if typology != "mfp" and not p.get("mfp_models"):
                # no vendor knowledge of its model names: look for a scanner or fax row
                hit = pre.get("hrmfp")
                if hit is None:
                    hit = await self.hr_mfp_row(dev, printer_idx)
                    dev["hrmfp"] = hit
                if hit:
                    typology, why = "mfp", "hrDeviceDescr.%s" % hit
            if why:
                sources["typology"] = why
            rec.update({"typology": typology, "technology": tech or "unknown", "color": colour,
                        "duplex": duplex, "install_date": None})

        rec["collected_at"] = time_s() or None   # null until the box has learnt the time (spec)
        rec["scan"] = scan
        rec["snmp_version"] = dev["cred"].version
        rec["sources"] = sources

        key = serial or ("@" + host)
        if self.state is not None:
            self.state.update("@" + host, rows=dev.get("newrows") or dev["rows"])
            if "hrmfp" in dev:
                self.state.update("@" + host, hrmfp=dev["hrmfp"])
            if want_counters and counters:
                flags = records.check_counters(self.state.counters(key), counters)
                self.state.keep_counters(key, counters, rec["collected_at"])
                if flags:
                    rec["counter_flags"] = flags
        elif want_counters and counters:
            flags = records.check_counters(None, counters)
            if flags:
                rec["counter_flags"] = flags
        return rec


# sysDescr texts that name a network card or agent, not a printer model.
NOT_MODELS = ("multi-environment", "printing system", "built-in", "printserver", "print server",
              "zebranet", "zebra wired", " nc-")


def derive_model(profile, ctx, printer_idx=None, entity_model=None):
    """(model, provenance): the profile's rules, else hrDeviceDescr, else ENTITY-MIB, else
    sysDescr; cleaned of firmware noise, the vendor name and marketing suffixes."""
    p = profile or {}
    model, src = None, None
    for rule in p.get("model", ()):
        v = profiles.extract_text(rule, ctx)
        if v and not ("sysdescr" in rule and _not_model(v)):
            model, src = v, profiles.provenance(rule, p)
            break
    if not model and ctx.get("hr"):
        model, src = ctx["hr"], "hrDeviceDescr" + ("" if printer_idx is None else ".%d" % printer_idx)
    if not model and entity_model is not None:
        model, src = records.text(entity_model), "entPhysicalModelName"
    if not model and ctx.get("sysdescr") and not _not_model(ctx["sysdescr"]):
        model, src = ctx["sysdescr"], "sysDescr"
    if not model:
        return None, None
    vendor = p.get("vendor")
    prefixes = p.get("model_prefixes") or ([vendor + " "] if vendor else [])
    model = records.clean_model(model, prefixes, p.get("model_suffixes", ()), p.get("model_replace", ()))
    if model and " " in model:
        head, last = model.rsplit(" ", 1)
        if "." in last and last.replace(".", "").isdigit():
            model = head   # a trailing firmware version ("Aficio MP C3002 2.20")
    return model, (src if model else None)


def _not_model(s):
    s = " " + s.lower()
    for w in NOT_MODELS:
        if w in s:
            return True
    return False


def _statics_fit(cached, rows):
    """The cached static columns still describe these rows: same indexes, no level rose."""
    c = cached.get("rows") or {}
    if sorted(c) != sorted(str(i) for i in rows):
        return False
    for idx, r in rows.items():
        before, now = c[str(idx)][5], records.integer(r.get(9))
        mx = c[str(idx)][3]
        if isinstance(before, int) and isinstance(now, int) and now > before:
            if before < 0 or now < 0 or now - before > max(1, (mx or 100) // 20):
                return False
    return True


def _needs_hr(profile, got, descr):
    """Whether the model may come from hrDeviceDescr: no profile rule before it has given one."""
    ctx = {"get": got, "hr": None, "sysdescr": descr}
    for rule in (profile or {}).get("model", ()):
        if "hr" in rule or ("oid" in rule and rule["oid"] not in got):
            return True
        v = profiles.extract_text(rule, ctx)
        if v and not ("sysdescr" in rule and _not_model(v)):
            return False
    return True


def _next_cell(dev, root):
    """(oid, value) where the first GETNEXT found `root`'s first row, or None (no table)."""
    for oid, v in dev.get("next") or ():
        if oid.startswith(root + ".") and not ber.is_exception(v):
            return oid, v
    return None


def _cell(oid, prefix):
    """(column, row index (last arc)) of a table cell OID under prefix "<table entry>."."""
    parts = oid[len(prefix):].split(".")
    if len(parts) < 2 or not parts[0].isdigit():
        return None, None
    last = parts[-1]
    return int(parts[0]), int(last) if last.isdigit() else last


def _typology(p, model, descr, counters):
    """Typology from what is already read; collect() then looks at hrDeviceDescr rows."""
    if p.get("typology"):
        return p["typology"], "profile"
    for k in ("copy", "scan", "fax"):
        if k in counters:
            return "mfp", "counters." + k
    if descr and records.has_mfp_words(descr):
        return "mfp", "sysDescr"
    for m in p.get("mfp_models", ()):
        if model and m in model:
            return "mfp", "profile model name"
    if model:
        # a single-function printer: none of the signs above (nor, without mfp_models,
        # a scanner, copier or fax row in hrDeviceTable: collect() looks)
        return "printer", "profile model names" if p.get("mfp_models") else "no copier, scanner or fax seen"
    return "unknown", None


def _is_ip(host):
    parts = host.split(".")
    return len(parts) == 4 and all(x.isdigit() for x in parts)


_EMPTY = (None, [], {}, "")


def merge_extra(rec, extra, xport):
    """Fold the reading of a vendor's second agent (Canon: UDP 47545) into the device's record.

    It is the same device, so it stays one record (port: the main agent's); the second
    agent only fills what the main one left unknown, each value's source naming its port."""
    src = rec.setdefault("sources", {})
    xsrc = extra.get("sources") or {}
    for k, v in extra.items():
        if k in ("sources", "counters", "ip", "port") or v in _EMPTY or rec.get(k) not in _EMPTY:
            continue
        rec[k] = v
        src[k] = ("udp:%d " % xport) + xsrc.get(k, "")
    cnt = rec.get("counters")
    if cnt is None:
        cnt = rec["counters"] = {}
    for k, v in (extra.get("counters") or {}).items():
        if k == "vendor":
            vend = cnt.get("vendor")
            if vend is None:
                vend = cnt["vendor"] = {}
            for name, n in v.items():
                if name not in vend:
                    vend[name] = n
                    src["counters.vendor." + name] = ("udp:%d " % xport) + xsrc.get("counters.vendor." + name, "")
        elif k not in cnt:
            cnt[k] = v
            src["counters." + k] = ("udp:%d " % xport) + xsrc.get("counters." + k, "")
    return rec


class Merger:
    """Tells a device answering on several addresses: same serial or same MAC.

    Remembers at most `limit` keys (a sweep of a /16 does not grow it past that)."""

    def __init__(self, limit=1024):
        self.limit = limit
        self.seen = {}

    def first_ip(self, rec):
        """The address this device was already reported at, or None (and remember it)."""
        keys = []
        if rec.get("serial"):
            keys.append("s:%s:%s" % (rec.get("manufacturer"), rec["serial"]))
        if rec.get("mac"):
            keys.append("m:" + rec["mac"])
        for k in keys:
            if k in self.seen:
                return self.seen[k]
        if len(self.seen) + len(keys) > self.limit:
            self.seen.clear()
        for k in keys:
            self.seen[k] = rec["ip"]
        return None


async def sweep(client, addresses, on_record, community=b"public", version="2c", workers=8,
                scan="full", profile_list=None, cred=None, creds=None, state=None, pace_ms=0,
                on_duplicate=None, window=256, rate=0, stats=None, statics=None, web_ports=None,
                on_unreachable=None):
    """Collect every printer among `addresses` (an iterator of (ip, port)), calling on_record(rec).

    Discovery (fleetbox.discovery) keeps up to `window` probes in flight from one
    coroutine; the addresses that answer go to `workers` collectors through a short
    queue (discovery pauses while it is full), so memory does not grow with the range.
    v3 users are tried by the collectors on the addresses that answered discovery's SNMPv3
    engine probe only (fleetbox.discovery).
    A device seen again at another address (same serial or MAC) is reported once;
    on_duplicate(rec, first_ip) hears about the others. `stats` (a dict) receives the
    discovery figures. With a `state`, a device seen before that falls silent is told
    apart from a broken one (docs/collection.md): on_unreachable(marker) hears about it
    once, with status.reachability "unreachable" (or "asleep" when it was last seen
    asleep), and it is then probed only every 2nd, 4th ... 9th sweep until it answers.
    Returns (probed, found).
    """
    col = Collector(client, community, version, profile_list, cred, creds, state, pace_ms, statics, web_ports)
    merger = Merger()
    _port.gc_threshold(GC_EVERY)
    counts = [0, 0, 0]   # probed, records, extra agents merged
    queue = []
    qmax = max(32, workers * 4)   # answered addresses waiting (~0.5 KB each); discovery pauses past it
    wake = asyncio.Event()
    done = [False]
    v3 = [c for c in col.creds if c.version == "3"]

    def counted():
        for a in addresses:
            if state is not None:
                st = state.get("@" + a[0])
                if st.get("qs", 0) > 0:     # silent since it was seen: leave it alone a while
                    state.update("@" + a[0], qs=st["qs"] - 1)
                    continue
            counts[0] += 1
            yield a

    def answered(host, p, ci, sysvals):
        # sysvals None: only the SNMPv3 engine discovery was answered (the v3 collector's turn).
        # A whole window of answers can wait here: their values only (no OID keys) in a tuple.
        if sysvals is not None:
            sysvals = tuple(sysvals.get(o) for o in discovery.SYS_OIDS)
        queue.append((host, p, (prober.creds[ci], sysvals) if sysvals is not None else None))
        if state is not None and state.get("@" + host).get("q"):
            print("collector: %s:%d answers again" % (host, p))
            state.update("@" + host, q=None, qs=0)
        if state is not None and state.get("@" + host).get("pc", 0) != ci:
            state.update("@" + host, pc=ci)   # this community first, next time
        wake.set()

    def silent(host, p):
        if state is not None:
            went_quiet(host, p)

    first = (lambda host: state.get("@" + host).get("pc", 0)) if state is not None else None
    prober = discovery.Prober(col.creds, client.timeout_ms, client.retries, window, rate, first_cred=first)
    v3col = Collector(client, profile_list=profile_list, creds=v3, state=state, pace_ms=pace_ms,
                      statics=statics, web_ports=web_ports) if v3 else None

    async def feed():
        try:
            await prober.run(counted(), answered, lambda: len(queue) < qmax, silent)
        finally:
            done[0] = True
            wake.set()

    def went_quiet(host, p):
        st = state.get("@" + host)
        if not st.get("seen"):
            return      # never answered: nothing to tell
        q = st.get("q")
        if q:
            q = min(q * 2, QUIET_MAX)
            state.update("@" + host, q=q, qs=q)     # still silent: no record, no log
            return
        state.update("@" + host, q=1, qs=1)
        how = "asleep" if st.get("pw") == "sleep" else "unreachable"
        print("collector: %s:%d (seen before) is silent: %s; probed gently until it answers" % (host, p, how))
        if on_unreachable:
            marker = {"ip": host, "port": p, "collected_at": time_s() or None, "scan": "alerts",
                      "status": {"reachability": how}}
            for k, f in (("sr", "serial"), ("mc", "mac")):
                if st.get(k):
                    marker[f] = st[k]
            on_unreachable(marker)

    async def one(c, host, p, probed, any_port=False):
        try:
            return await c.collect(host, p, scan, probed, any_port)
        except snmp.Timeout:
            return None
        except (snmp.SnmpError, ber.BERError) as e:
            print("collector: %s:%d answered badly: %s" % (host, p, e))
        except Exception as e:  # noqa: BLE001  one device's surprise must not stop the sweep
            print("collector: %s:%d failed: %s %s" % (host, p, type(e).__name__, e))
        return None

    async def worker():
        while True:
            if not queue:
                if done[0]:
                    return
                wake.clear()
                await wake.wait()
                continue
            host, p, probed = queue.pop(0)
            c = v3col if probed is None else col
            rec = await one(c, host, p, probed)
            if rec is None:
                continue
            first = merger.first_ip(rec)
            if first is not None and first != rec["ip"]:
                if on_duplicate:
                    on_duplicate(rec, first)
                continue
            extra = c.extra_agent(rec) if scan != "discovery" else None   # same device: not for finding it
            skip = state.get("@" + host).get("xs", 0) if state is not None else 0
            if extra is not None and skip:
                state.update("@" + host, xs=skip - 1)
            elif extra is not None:
                # The vendor's second agent (Canon: UDP 47545), asked only where the profile
                # says; one that stays silent is asked again only every XS_SKIP+1 sweeps.
                xrec = await one(c, host, extra[0], None, extra[1])
                if xrec is None:
                    if state is not None:
                        state.update("@" + host, xs=XS_SKIP)
                else:
                    merge_extra(rec, xrec, extra[0])
                    xrec = None
                    counts[2] += 1
            if state is not None:
                pw = (rec.get("status") or {}).get("power")
                state.update("@" + host, seen=1, sr=rec.get("serial"), mc=rec.get("mac"),
                             pw=pw or state.get("@" + host).get("pw"))
            counts[1] += 1
            on_record(rec)
            rec = None
            # A record leaves a lot of short-lived garbage: collecting now keeps the small
            # heap unfragmented (a MemoryError would otherwise come from a 1 KB block).
            _port.collect()

    await asyncio.gather(feed(), *[worker() for _ in range(workers)])
    if stats is not None:
        stats.update(prober.stats)   # discovery's own packets and bytes
        stats["extra_agents"] = counts[2]
    return counts[0], counts[1]
