"""Discovery: which addresses answer SNMP, for a whole range at once, in bounded memory.

One coroutine and one UDP socket send a GET of the system group to every address,
keeping at most `window` requests in flight (a /24 fits in one window, so a sweep
takes about one timeout plus one doubled retry, whatever its size up to the window).
State per request in flight is 20 bytes in arrays allocated once (no dict that
grows, which a fragmented heap may fail to resize, no object per request); no
coroutine per address. A
silent address is retried once per credential, then forgotten. Replies are matched
on request id AND sender address and port; anything else is dropped.
When SNMPv3 credentials are given, the last credential of the rotation is an SNMPv3
engine discovery (RFC 3414 4: a noAuthNoPriv GET with no user and no varbinds, which
every v3 agent answers with a report and no secret is sent): an address that answers
only that is handed on as a v3 device (the collector then tries the v3 users). Such a
sweep waits one more timeout-and-retry for the silent addresses.
"""
import array
import asyncio
import socket

from fleetbox import ber, oids, port, snmp, targets

SYS_OIDS = oids.SYS_GROUP     # one copy of the tuple on the heap
_EAGAIN = (11, 35)


def _addr_ints(addr):
    k = port.addr_key(addr)
    if isinstance(k, tuple):
        return targets.ip_to_int(k[0]), k[1]
    return int.from_bytes(k[2:6], "big"), (k[0] << 8) | k[1]


class _V3Probe:
    """The rotation's SNMPv3 engine discovery (see the module docstring)."""
    version = "3"
    community = b""

    def __repr__(self):
        return "Credential(3, engine discovery)"


V3_PROBE = _V3Probe()


def _v3_msg_id(data):
    """msgID of an SNMPv3 message (the request id of its report); BERError if malformed."""
    from fleetbox import usm
    m = usm.decode_message(data)
    return m.msg_id


class Prober:
    """Sweep addresses with the given credentials (communities; v3 users become one
    engine discovery step); see the module docstring.

    `rate`: most datagrams per second (0: no limit). stats: sent, answered, silent,
    dropped, bytes_out, bytes_in, ms (the last run's wall time).
    """

    def __init__(self, creds, timeout_ms=1000, retries=1, window=256, rate=0, bufsize=2048,
                 first_cred=None):
        self.creds = [c for c in creds if c.version in ("1", "2c")]
        if [c for c in creds if c.version == "3"]:
            self.creds.append(V3_PROBE)
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.window = window
        self.rate = rate
        self.bufsize = bufsize
        self.first_cred = first_cred   # host -> index of the credential to try first (remembered)
        self.stats = {"sent": 0, "answered": 0, "silent": 0, "dropped": 0, "bytes_out": 0, "bytes_in": 0,
                      "ms": 0}
        # per slot: address, port, credential index, attempt, deadline (ms), request id (0: free)
        self._ip = self._port = self._cred = self._first = self._try = self._due = self._rids = None
        self._t0 = 0
        self._budget = self._t_rate = 0   # datagrams left in this second (rate), its start
        self._cursor = 0
        self._busy = 0
        self._answers = []
        self._event = asyncio.Event()
        self._rid = int.from_bytes(port.urandom(4), "big") & 0x3FFFFFFF

    def _send(self, sock, i):
        host = targets.int_to_ip(self._ip[i])
        c = self.creds[self._cred[i]]
        if c is V3_PROBE:
            msg = snmp.discovery_request(self._rids[i], self.bufsize)
        else:
            msg = snmp.encode_request(c.version, c.community, ber.GET, self._rids[i], SYS_OIDS)
        # deadlines are kept relative to the start of the sweep (small ints in an 'i' array)
        self._due[i] = port.ticks_diff(port.ticks_ms(), self._t0) + self.timeout_ms * (1 << self._try[i])
        try:
            sock.sendto(msg, socket.getaddrinfo(host, self._port[i], socket.AF_INET, socket.SOCK_DGRAM)[0][-1])
        except OSError:
            return
        self.stats["sent"] += 1
        self.stats["bytes_out"] += len(msg)

    def _take(self, ip, p, cred, attempt):
        """A free slot for a request, with a fresh request id (low 9 bits: the slot)."""
        n = self.window
        i = self._cursor
        while self._rids[i]:
            i = (i + 1) % n
        self._cursor = (i + 1) % n
        self._rid = (self._rid % 0x3FFFFF) + 1
        self._rids[i] = (self._rid << 9) | i
        self._ip[i], self._port[i], self._cred[i], self._try[i] = ip, p, cred % len(self.creds), attempt
        self._busy += 1
        return i

    def _drop(self, i):
        self._rids[i] = 0
        self._busy -= 1

    async def _receive(self, sock):
        while True:
            await port.wait_readable(sock)
            try:
                data, addr = port.recv_datagram(sock, self.bufsize)
            except OSError:
                continue
            self.stats["bytes_in"] += len(data)
            try:
                if snmp.message_version(data) == 3:
                    r = None
                    rid = _v3_msg_id(data)
                else:
                    r = snmp.decode_response(data)
                    rid = r.request_id
            except ber.BERError:
                self.stats["dropped"] += 1
                continue
            i = rid & 511
            c = self.creds[self._cred[i]] if i < self.window else None
            if (c is None or not rid or self._rids[i] != rid
                    or _addr_ints(addr) != (self._ip[i], self._port[i])
                    or (c is V3_PROBE) != (r is None)
                    or (r is not None and (r.pdu_type != ber.RESPONSE or r.community != c.community
                                           or r.version != c.version or r.error_status))):
                self.stats["dropped"] += 1
                continue
            # a v3 agent's report: it is there (its system group comes with the v3 user)
            self._answers.append((self._ip[i], self._port[i], self._cred[i], r.varbinds if r else None))
            self._drop(i)
            self._event.set()

    def _allocate(self):
        self.window = max(1, min(self.window, 512))
        n = self.window
        self._ip = array.array("I", bytes(4 * n))
        self._port = array.array("H", bytes(2 * n))
        self._cred = array.array("B", bytes(n))
        self._first = array.array("B", bytes(n))   # credential tried first (all tried: silent)
        self._try = array.array("B", bytes(n))
        self._due = array.array("i", bytes(4 * n))
        self._t0 = port.ticks_ms()
        self._rids = array.array("I", bytes(4 * n))
        self._cursor = 0
        self._busy = 0
        self._budget = self.rate
        self._t_rate = port.ticks_ms()

    def _send_new(self, sock, it, room):
        """Probe new addresses while the window, the collectors (`room`) and the rate allow;
        False once every address has been sent."""
        while self._busy < self.window and (room is None or room()):
            if self.rate:
                now = port.ticks_ms()
                if port.ticks_diff(now, self._t_rate) >= 1000:
                    self._budget, self._t_rate = self.rate, now
                if self._budget <= 0:
                    break
                self._budget -= 1
            try:
                host, p = next(it)
            except StopIteration:
                return False
            first = self.first_cred(host) if self.first_cred else 0
            first = first if 0 <= first < len(self.creds) else 0
            i = self._take(targets.ip_to_int(host), p, first, 0)
            self._first[i] = first
            self._send(sock, i)
        return True

    def _expire(self, sock, more, on_silent):
        """Retry, or move to the next credential, every request past its deadline; an
        address that every credential left unanswered is silent. Returns the ms to wait."""
        now = port.ticks_diff(port.ticks_ms(), self._t0)
        wait = 50 if more else 1000
        for i in range(self.window):
            if not self._rids[i]:
                continue
            left = self._due[i] - now
            if left > 0:
                wait = min(wait, left)
                continue
            ip, p, ci, attempt, first = self._ip[i], self._port[i], self._cred[i], self._try[i], self._first[i]
            self._drop(i)
            if attempt < self.retries:
                attempt += 1
            elif (ci + 1) % len(self.creds) != first:
                ci = (ci + 1) % len(self.creds)
                attempt = 0
            else:
                self.stats["silent"] += 1
                if on_silent:
                    on_silent(targets.int_to_ip(ip), p)
                continue
            j = self._take(ip, p, ci, attempt)
            self._first[j] = first
            self._send(sock, j)
            wait = min(wait, self.timeout_ms)
        return wait

    async def run(self, addresses, on_answer, room=None, on_silent=None):
        """on_answer(host, port, credential index, {oid: value}) for each address that
        answers; on_silent(host, port) for the others; `room()` False pauses sending new
        addresses (the collectors are busy)."""
        if not self.creds:
            for host, p in addresses:
                if on_silent:
                    on_silent(host, p)
            return
        it = iter(addresses)
        more = True
        self._allocate()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        rx = asyncio.create_task(self._receive(sock))
        try:
            while True:
                if more:
                    more = self._send_new(sock, it, room)
                while self._answers:
                    ip, p, ci, vbs = self._answers.pop(0)
                    self.stats["answered"] += 1
                    on_answer(targets.int_to_ip(ip), p, ci, dict(vbs) if vbs is not None else None)
                if not more and not self._busy:
                    break
                wait = self._expire(sock, more, on_silent)
                if not more and not self._busy and not self._answers:
                    break   # the last address just fell silent: no reason to wait any longer
                self._event.clear()
                try:
                    await asyncio.wait_for(self._event.wait(), max(wait, 5) / 1000)
                except asyncio.TimeoutError:
                    pass
        finally:
            rx.cancel()
            try:
                await rx
            except BaseException:  # noqa: BLE001  (the cancellation itself)
                pass
            sock.close()
            self.stats["ms"] = port.ticks_diff(port.ticks_ms(), self._t0)
            self._ip = self._port = self._cred = self._first = self._try = self._due = self._rids = None
