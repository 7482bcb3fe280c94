"""Table walks over one agent: roots, tables, columns; GETBULK, GETNEXT where refused.

Few bytes on the LAN: tables as GETBULK of just the needed columns, each request sized
by the row count remembered from the last scan (Target.rows) or learnt as the walk goes,
so nothing past a table's end is asked where it can be avoided (docs/collection.md
"What a full scan asks a printer").
"""
import asyncio

from fleetbox import ber, snmp

MAX_ROWS = 64
REPS_MAX = 32      # GETBULK max-repetitions in a table walk (agents trim a reply that gets too big)


class Target:
    """One agent being read: where and how to ask it, and what its walks learnt.

    `rows`: {table name: row count} of the last scan (device memory); `newrows`: the
    counts found in this one.
    """

    def __init__(self, host, port, cred, any_port=False, rows=None):
        self.host = host
        self.port = port
        self.cred = cred
        self.any_port = any_port
        self.nobulk = False      # refused GETBULK once: GETNEXT from then on
        self.reps_cap = 0        # > 0: a GETBULK asking for more rows was tooBig (or too big to read)
        self.choked = False      # a walk timed out: no more walks (keep what was read)
        self.rows = rows or {}
        self.newrows = {}


def cell(oid, prefix):
    """(column, row index (last arc)) of a table cell OID under prefix "<table entry>."."""
    parts = oid[len(prefix):].split(".")
    if len(parts) < 2 or not parts[0].isdigit():
        return None, None
    last = parts[-1]
    return int(parts[0]), int(last) if last.isdigit() else last


class Walker:
    """Requests to a Target through a shared snmp.Client, `pace_ms` apart at least."""

    def __init__(self, client, pace_ms=0):
        self.client = client
        self.pace_ms = pace_ms

    async def pace(self):
        if self.pace_ms:
            await asyncio.sleep(self.pace_ms / 1000)

    async def get(self, t, oids):
        await self.pace()
        got = await self.client.get(t.host, oids, port=t.port, cred=t.cred, any_port=t.any_port)
        return dict(got)

    async def getnext(self, t, oids):
        await self.pace()
        return await self.client.getnext(t.host, oids, port=t.port, cred=t.cred, any_port=t.any_port)

    async def bulk(self, t, oids, reps, nr=0):
        """GETBULK, or GETNEXT on v1 / agents that refuse GETBULK (then one row per request).
        `nr` non-repeaters first (a GETNEXT each), then the repeated OIDs."""
        if t.cred.version != "1" and not t.nobulk:
            await self.pace()
            if t.reps_cap:
                reps = min(reps, t.reps_cap)
            while True:
                try:
                    return await self.client.getbulk(t.host, oids, nr, reps, port=t.port, cred=t.cred,
                                                     any_port=t.any_port), len(oids)
                except snmp.Timeout:
                    raise
                except snmp.SnmpError as e:
                    if e.status != snmp.TOO_BIG or reps == 1:
                        t.nobulk = True
                        break
                    reps //= 2
                    t.reps_cap = reps    # the agent's rows are long: its next walks start here
        return await self.getnext(t, oids), len(oids)

    async def walk_roots(self, t, roots, reps, limit=MAX_ROWS, starts=None, seeds=None, force=False,
                         expect=None, whole_index=False):
        """Several columns (any tables) at once: [{row index (last arc): value}] per root.

        One GETBULK carries every root still going; a root stops at the end of its
        subtree, and after `limit` rows. `starts`/`seeds`: resume each root after an OID
        already read (None in starts: that root is known to be absent). `expect`: per root,
        None or the sorted row indexes it is known to hold: it stops at the last of them
        and the next request asks only for as many rows as are missing (no overshoot).
        `whole_index`: rows keyed by the whole index after the root ("2.1") instead of its
        last arc, for tables indexed by more than one arc whose last arcs repeat.
        `force`: walk even an agent that already choked.
        """
        cur = list(starts) if starts else list(roots)
        out = seeds if seeds else [{} for _ in roots]
        expect = expect or [None] * len(roots)
        active = [i for i in range(len(roots)) if cur[i] is not None]
        if t.choked and not force:
            return out   # this agent already choked on a walk: no more storms for it
        while active:
            try:
                vbs, k = await self.bulk(t, [cur[i] for i in active], reps)
            except snmp.Timeout:
                # The agent answered before: some rows make it choke (seen on replayed and real
                # agents alike). Keep what was read rather than insist on a struggling agent.
                t.choked = True
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
            # The rows still expected, exactly; else grow gently: past its end a column
            # returns the next one's values (overshoot).
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

    def table_reps(self, t, name, first, last):
        """max-repetitions of a table walk's first request: the rows of the last scan times
        the columns, plus one to see the end; 8 the first time."""
        hint = t.rows.get(name)
        if isinstance(hint, int) and hint > 0:
            return min(REPS_MAX, hint * (last - first + 1) + 1)
        return 8

    async def walk_table(self, t, name, base, first, last, start=None, seed=None, limit=MAX_ROWS,
                         pre=None):
        """Columns first..last of the table at `base` as one subtree: {row index: {column: value}}.

        Adjacent columns walked in one stream of GETBULKs waste nothing at the seams; once
        the first column has ended its row count is known and the next request asks for
        exactly what remains. While every column repeats the first one's row indexes the
        walk stops at the last cell; otherwise it asks one object more to see the end.
        `start`/`seed`: a cell already read (the walk goes on after it); `pre`: the
        answer to the first request, already asked (the printer check's GETBULK);
        t.rows[name]: the row count of the last scan.
        """
        prefix = base + "."
        rows, per = {}, {}
        keys = []          # row indexes of the first column seen, in order
        regular = True
        cur = start or prefix + str(first)
        if start and seed is not None:
            col, idx = cell(start, prefix)
            rows[idx] = {col: seed}
            per[col] = 1
            keys.append(idx)
        reps = self.table_reps(t, name, first, last)
        vbs = pre
        while not t.choked or vbs is not None:
            if vbs is None:
                try:
                    vbs, _ = await self.bulk(t, [cur], reps)
                except snmp.Timeout:
                    t.choked = True   # as in walk_roots: keep what was read
                    break
            col = None
            for oid, val in vbs:
                if (val is ber.END_OF_MIB_VIEW or not oid.startswith(prefix)
                        or ber.oid_compare(oid, cur) <= 0):
                    col = None
                    break
                col, idx = cell(oid, prefix)
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
        t.newrows[name] = len(rows)
        return rows

    async def columns(self, t, base, cols, reps, limit=MAX_ROWS, expect=None):
        """{row index: {column: value}} for `cols` of the table at `base`."""
        got = await self.walk_roots(t, [base + "." + str(c) for c in cols], reps, limit, expect=expect)
        rows = {}
        for c, vals in zip(cols, got):
            for idx, v in vals.items():
                rows.setdefault(idx, {})[c] = v
        return rows

    async def tables(self, t, specs, got):
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
            first_cell = root + "." + first
            v = got.get(first_cell)
            seed, start = {}, None
            if v is not None and not ber.is_exception(v):
                last = first.rsplit(".", 1)[-1]
                seed[int(last)] = v
                if not (expect and expect[-1] == int(last)):
                    start = first_cell
            roots.append(root)
            starts.append(start)
            seeds.append(seed)
            expects.append(expect)
            n = t.rows.get(name)
            if expect:
                n = len(expect) - 1         # the rows after the first, exactly
            if isinstance(n, int) and n > reps:
                reps = n     # (a remembered count: the rows after the first, plus one to see the end)
        walked = await self.walk_roots(t, roots, reps, MAX_ROWS, starts, seeds, expect=expects)
        out = {}
        for (name, _, col, _, _), vals in zip(specs, walked):
            rows = {}
            for idx, v in vals.items():
                rows[idx] = {col: v}
            t.newrows[name] = len(rows)
            out[name] = rows
        return out

