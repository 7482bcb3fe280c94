"""The sweep: every printer among many addresses, in bounded memory (docs/collection.md).

Discovery (fleetbox.discovery) keeps up to `window` probes in flight from one coroutine;
the addresses that answer go to `workers` collectors through a short queue (discovery
pauses while it is full), so memory does not grow with the range. A whole window of
answers can arrive at once (a /24 fits in one): only the first few keep their system
group (~0.5 KB each); the others wait as 7 bytes (address, port, credential) and the
collector asks their system group again, one GET (docs/collection.md).
"""
import array
import asyncio

from fleetbox import ber, devstate, discovery, snmp, targets
from fleetbox import port as _port
from fleetbox.assemble import merge_extra
from fleetbox.collector import Collector
from fleetbox.port import ERROR, INFO, WARN, log, time_s

GC_EVERY = 8192    # bytes allocated between garbage collections during a sweep (small heaps)
QUEUE_MAX = 32     # answered addresses waiting for a collector before discovery pauses
VALUES_KEPT = 4    # of which at most this many (or one per worker) keep their system group
PING_TIMEOUT_MS = 1000   # the most one echo to a silent device waits
_V3 = 255          # credential index of a waiting address that answered the SNMPv3 engine probe


class SweepOptions:
    """How a sweep runs. Every field has the default a one-shot scan wants.

    scan: the scan kind (fleetbox.readplan.KINDS). creds: snmp.Credential list, tried in
    order (default: v2c "public"); v3 users are tried only where discovery's SNMPv3 engine
    probe was answered. profiles: compiled vendor profiles. state: device memory
    (devstate.DeviceState; None: nothing remembered). statics: devstate.Statics (supplies'
    static columns on flash). workers: collectors at once (0: as many as the free heap holds,
    collectors_for_heap); window: discovery probes in
    flight; rate: most discovery datagrams per second (0: no limit); pace_ms: least time
    between two requests to one device; web_ports: {profile page port: port to use}.
    on_duplicate(rec, first_ip): a device seen again at another address (same serial or
    MAC) is reported once, this hears about the others. on_unreachable(marker): a device
    seen before that fell silent (docs/collection.md); with `ping` (the box's default,
    config key "ping"), its status says whether the address still answers one ICMP echo
    (fleetbox.icmp), sent at `rate` like discovery's datagrams. stats: a dict that
    receives the discovery figures and "extra_agents".
    """

    def __init__(self, scan="full", creds=None, profiles=None, state=None, statics=None, workers=8,
                 window=256, rate=0, pace_ms=0, web_ports=None, on_duplicate=None, on_unreachable=None,
                 stats=None, ping=False):
        self.scan = scan
        self.ping = ping
        self.creds = creds
        self.profiles = profiles
        self.state = state
        self.statics = statics
        self.workers = workers
        self.window = window
        self.rate = rate
        self.pace_ms = pace_ms
        self.web_ports = web_ports
        self.on_duplicate = on_duplicate
        self.on_unreachable = on_unreachable
        self.stats = stats


# Free heap at a sweep's start that holds two collections at once (bench/collect/collect.py
# --part c: 2 collectors peak at about 65 KB of data heap, 1 at about 52 KB; docs/collection.md).
TWO_COLLECTORS_HEAP = 96 * 1024


def collectors_for_heap():
    """2 collectors where the free heap holds two collections at once, else 1: the box's
    default (config `workers` 0), so a small board is not short of memory by default."""
    _port.collect()
    free = _port.mem_free()          # -1: the runtime cannot tell (CPython): its heap is no limit
    return 2 if free < 0 or free >= TWO_COLLECTORS_HEAP else 1


async def sweep(client, addresses, on_record, opts=None):
    """Collect every printer among `addresses` (an iterator of (ip, port)), calling
    on_record(rec); `opts`: a SweepOptions. With device memory, a device seen before that
    falls silent is told apart from a broken one: on_unreachable hears about it once, with
    status.reachability "unreachable" (or "asleep" when it was last seen asleep), and it is
    then probed only every 2nd, 4th ... 9th sweep until it answers. Returns (probed, found).
    """
    s = _Sweep(client, addresses, on_record, opts or SweepOptions())
    _port.gc_threshold(GC_EVERY)
    await asyncio.gather(s.feed(), *[s.worker() for _ in range(s.workers)])
    if s.opts.stats is not None:
        s.opts.stats.update(s.prober.stats)   # discovery's own packets and bytes
        s.opts.stats["extra_agents"] = s.merged
    return s.probed, s.found


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


class _Sweep:
    """One sweep's moving parts: discovery feeding a queue, workers collecting from it."""

    def __init__(self, client, addresses, on_record, opts):
        self.opts = opts
        self.workers = opts.workers or collectors_for_heap()
        self.addresses = addresses
        self.on_record = on_record
        self.memory = opts.state if opts.state is not None else devstate.NoMemory()
        creds = opts.creds or [snmp.Credential("2c", b"public")]
        self.col = Collector(client, creds=creds, profile_list=opts.profiles, state=self.memory,
                             pace_ms=opts.pace_ms, statics=opts.statics, web_ports=opts.web_ports)
        v3 = [c for c in self.col.creds if c.version == "3"]
        self.v3col = Collector(client, creds=v3, profile_list=opts.profiles, state=self.memory,
                               pace_ms=opts.pace_ms, statics=opts.statics, web_ports=opts.web_ports) if v3 else None
        self.prober = discovery.Prober(self.col.creds, client.timeout_ms, client.retries, opts.window, opts.rate,
                                       first_cred=self.memory.preferred_credential)
        self.merger = Merger()
        self.probed = self.found = self.merged = 0
        self.queue = []     # (host, port, (credential, system group values) or None)
        self.qmax = max(QUEUE_MAX, self.workers * 4)
        self.keep = max(VALUES_KEPT, self.workers)
        # the others: address, port, credential index, in arrays filled and emptied in turn
        self.wait_ip = array.array("I")
        self.wait_port = array.array("H")
        self.wait_cred = bytearray()
        self.wait_next = 0
        self.wake = asyncio.Event()
        self.done = False
        self.pings = []     # markers of silent devices waiting for their ICMP echo
        self.can_ping = True
        self.ping_turn = asyncio.Lock()
        self.pinged_at = _port.ticks_ms()

    def counted(self):
        for a in self.addresses:
            if self.memory.quiet(a[0]):
                continue     # silent since it was seen: left alone a while
            self.probed += 1
            yield a

    def waiting(self):
        return len(self.queue) + len(self.wait_ip) - self.wait_next

    def answered(self, host, p, ci, sysvals):
        # sysvals None: only the SNMPv3 engine discovery was answered (the v3 collector's turn).
        if len(self.queue) < self.keep:
            if sysvals is not None:
                sysvals = tuple(sysvals.get(o) for o in discovery.SYS_OIDS)   # values only, no OID keys
            self.queue.append((host, p, (self.prober.creds[ci], sysvals) if sysvals is not None else None))
        else:
            self.wait_ip.append(targets.ip_to_int(host))
            self.wait_port.append(p)
            self.wait_cred.append(ci if sysvals is not None else _V3)
        if self.memory.answers_again(host):
            log("collector", INFO, "%s:%d answers again" % (host, p))
        self.memory.prefer_credential(host, ci)   # this community first, next time
        self.wake.set()

    def silent(self, host, p):
        how = self.memory.fell_silent(host)
        if how is None:
            return      # never answered, or still silent: nothing to tell
        log("collector", INFO, "%s:%d (seen before) is silent: %s; probed gently until it answers" % (host, p, how))
        if self.opts.on_unreachable:
            marker = {"ip": host, "port": p, "collected_at": time_s() or None, "scan": "alerts",
                      "status": {"reachability": how}}
            serial, mac = self.memory.last_identity(host)
            if serial:
                marker["serial"] = serial
            if mac:
                marker["mac"] = mac
            if self.opts.ping:
                self.pings.append(marker)   # a worker pings, then tells
                self.wake.set()
            else:
                self.opts.on_unreachable(marker)

    async def tell_pinged(self, marker):
        """status.ping: True when the silent device answers ICMP echo (SNMP off or blocked,
        the device there), False when nothing answers; left out where ICMP is not allowed.
        One echo per marker, at most PING_TIMEOUT_MS, at the sweep's rate; a platform that
        refuses ICMP is not asked again this sweep."""
        if self.can_ping:
            from fleetbox import icmp
            async with self.ping_turn:      # the workers' echoes one after another at the rate
                if self.opts.rate:
                    wait = 1000 // self.opts.rate - _port.ticks_diff(_port.ticks_ms(), self.pinged_at)
                    if wait > 0:
                        await _port.sleep_ms(wait)
                self.pinged_at = _port.ticks_ms()
            answered = await icmp.ping(marker["ip"], min(self.prober.timeout_ms, PING_TIMEOUT_MS))
            if answered is None:
                self.can_ping = False
                log("collector", INFO, "ICMP echo not allowed here (no ping or raw socket): silent devices"
                    " are reported without status.ping")
            else:
                marker["status"]["ping"] = answered
        self.opts.on_unreachable(marker)

    async def feed(self):
        try:
            await self.prober.run(self.counted(), self.answered, lambda: self.waiting() < self.qmax,
                                  self.silent)
        finally:
            self.done = True
            self.wake.set()

    def next_address(self):
        """(host, port, probed) of the next answered address: those holding their system
        group first (they hold memory); probed None: the v3 collector's turn."""
        if self.queue:
            return self.queue.pop(0)
        i = self.wait_next
        ci = self.wait_cred[i]
        host, p = targets.int_to_ip(self.wait_ip[i]), self.wait_port[i]
        self.wait_next = i + 1
        if self.wait_next == len(self.wait_ip):     # all taken: the arrays start again empty
            self.wait_ip, self.wait_port, self.wait_cred = array.array("I"), array.array("H"), bytearray()
            self.wait_next = 0
        return host, p, (None if ci == _V3 else (self.prober.creds[ci], None))

    async def one(self, c, host, p, probed, any_port=False):
        try:
            return await c.collect(host, p, self.opts.scan, probed, any_port)
        except snmp.Timeout:
            return None
        except (snmp.SnmpError, ber.BERError) as e:
            log("collector", WARN, "%s:%d answered badly: %s" % (host, p, e))
        except Exception as e:  # noqa: BLE001  one device's surprise must not stop the sweep
            log("collector", ERROR, "%s:%d failed: %s %s" % (host, p, type(e).__name__, e))
        return None

    async def worker(self):
        while True:
            if self.pings:
                await self.tell_pinged(self.pings.pop(0))
                continue
            if not self.waiting():
                if self.done:
                    return
                self.wake.clear()
                await self.wake.wait()
                continue
            host, p, probed = self.next_address()
            c = self.v3col if probed is None else self.col
            rec = await self.one(c, host, p, probed)
            if rec is None:
                continue
            first = self.merger.first_ip(rec)
            if first is not None and first != rec["ip"]:
                if self.opts.on_duplicate:
                    self.opts.on_duplicate(rec, first)
                continue
            await self.extra_agent(c, host, rec)
            self.memory.saw(host, rec.get("serial"), rec.get("mac"), (rec.get("status") or {}).get("power"))
            self.found += 1
            self.on_record(rec)
            rec = None
            # A record leaves a lot of short-lived garbage: collecting now keeps the small
            # heap unfragmented (a MemoryError would otherwise come from a 1 KB block).
            _port.collect()

    async def extra_agent(self, c, host, rec):
        """The vendor's second agent (Canon: UDP 47545), asked only where the profile says
        (not for finding devices); one that stays silent is asked again only every
        devstate.XS_SKIP+1 sweeps."""
        try:
            extra = c.extra_agent(rec) if self.opts.scan != "discovery" else None
        except Exception as e:  # noqa: BLE001  (a small heap's MemoryError re-reading the profile)
            # the record goes without the extra agent's fields; the sweep goes on
            log("collector", ERROR, "%s: extra agent not looked up: %s %s" % (host, type(e).__name__, e))
            return
        if extra is None or self.memory.skip_extra_agent(host):
            return
        xrec = await self.one(c, host, extra[0], None, extra[1])
        if xrec is None:
            self.memory.extra_agent_silent(host)
        else:
            merge_extra(rec, xrec, extra[0])
            self.merged += 1
