"""SNMP v1/v2c/v3 asyncio client: one UDP socket, many requests in flight.

Runs on MicroPython and CPython; the runtime-specific "wait until the socket is
readable" lives in fleetbox.port. The client never listens: its one socket is an
unbound (ephemeral-port) UDP client socket. The messages are fleetbox.snmpmsg (its
names are re-exported here, so callers keep using snmp.Credential, snmp.SnmpError,
snmp.decode_response, ...); the v3 half is fleetbox.snmpv3, imported on first use.
"""
import asyncio
import socket
import errno

from fleetbox import port as _port
from fleetbox.ber import (
    BERError, NO_SUCH_OBJECT, END_OF_MIB_VIEW, GET, GETNEXT, RESPONSE, GETBULK,
)
from fleetbox.oid import oid_normalize
from fleetbox.snmpmsg import (  # noqa: F401 (re-exported for callers)
    MAX_MSG, ERROR_NAMES, TOO_BIG, NO_SUCH_NAME, error_name, SnmpError, Timeout,
    Credential, Response, encode_message, encode_request, encode_pdu, decode_response,
    decode_pdu, message_version, discovery_request, cut_head,
)

_EAGAIN = (errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN))


def _credential(community, version, cred):
    if cred is not None:
        return cred
    if isinstance(community, Credential):
        return community
    return Credential(version, community)


def _v3():
    """fleetbox.snmpv3 (and fleetbox.usm), imported on first SNMPv3 use: a v1/v2c-only
    site never pays their heap."""
    from fleetbox import snmpv3
    return snmpv3


class _Pending:
    def __init__(self, key, cred, rid, engine=None, discovery=False, any_port=False):
        self.key = key
        self.any_port = any_port        # reply may come from another port of the same host
        self.cred = cred
        self.community = cred.community
        self.version = cred.version
        self.rid = rid
        self.engine = engine            # usm.Engine the v3 request was secured for
        self.discovery = discovery      # a v3 engine-discovery probe
        self.resp = None
        self.event = asyncio.Event()


# Request ids 128..32767: always exactly two octets on the wire, both ways (not four; and
# never one, so a request's size does not depend on where the random first id fell).
ID_MIN = 0x80
ID_MAX = 0x7FFF


def _seed_id():
    b = _port.urandom(2)
    return ID_MIN + ((b[0] << 8) | b[1]) % (ID_MAX - ID_MIN + 1)


def _after(rid):
    return rid + 1 if rid < ID_MAX else ID_MIN


def _from_peer(p, addr):
    """The reply came from the address and port the request went to; for a request
    marked any_port, from that address and any port (request id and community are
    still checked by the caller)."""
    key = _port.addr_key(addr)
    if p.key == key:
        return True
    return p.any_port and _port.key_host(p.key) == _port.key_host(key)


class Client:
    """Asynchronous SNMP v1/v2c/v3 manager.

    timeout_ms: first attempt's timeout; it doubles on each retry, capped at 8x.
    retries:    retransmissions (same request id) after the first attempt.
    window:     most requests in flight at once; more callers wait their turn.
    bufsize:    largest datagram accepted (bigger replies are truncated, counted and
                dropped). On MicroPython only the reply's own size is allocated.
    rate:       most datagrams sent per second (token bucket of `burst`), 0 = no limit.
    """

    MAX_ENGINES = 1024  # SNMPv3 engines remembered (ID, boots, time), oldest dropped

    def __init__(self, timeout_ms=1000, retries=1, window=64, bufsize=8192, rate=0,
                 burst=None):
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.window = max(1, min(window, 4096))   # well below the 32767 request ids
        self.bufsize = bufsize
        self.rate = rate
        self.burst = burst if burst is not None else max(1, rate // 10)
        self.stats = {"sent": 0, "received": 0, "dropped": 0, "malformed": 0,
                      "timeouts": 0, "retries": 0, "bytes_out": 0, "bytes_in": 0, "no_memory": 0,
                      "send_errors": 0, "recv_errors": 0, "truncated": 0,
                      "auth_failures": 0, "not_in_time_window": 0, "discoveries": 0}
        self._sock = None
        self._rx = None
        self._pending = {}
        self._next_id = _seed_id()
        self._inflight = 0
        self._slot = asyncio.Event()
        self._addr_cache = None
        self._engines = {}
        self._salt = None           # drawn on the first SNMPv3 privacy request
        self._tokens = self.burst
        self._tok_at = _port.ticks_ms()

    # -- plumbing

    def _socket(self):
        if self._sock is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            self._sock = s
        if self._rx is None or self._rx.done():
            self._rx = asyncio.create_task(self._receive(self._sock))
        return self._sock

    def _resolve(self, host, p):
        c = self._addr_cache
        if c is not None and c[0] == host and c[1] == p:
            return c[2]
        addr = socket.getaddrinfo(host, p, socket.AF_INET, socket.SOCK_DGRAM)[0][-1]
        self._addr_cache = (host, p, addr)
        return addr

    def _new_id(self):
        """The next free request id. 32640 of them: far more than a window in flight, and
        an id comes round again only after 32640 requests, long after any late reply to
        its last use (v1/v2c replies are also matched on address, port and community;
        v3 ones are authenticated)."""
        rid = self._next_id
        while rid in self._pending:
            rid = _after(rid)
        self._next_id = _after(rid)
        return rid

    def _new_salt(self):
        """The next 64-bit AES privacy salt (RFC 3826 3.1.2.1): random first, then counting."""
        s = self._salt
        s = int.from_bytes(_port.urandom(8), "big") if s is None else (s + 1) & 0xFFFFFFFFFFFFFFFF
        self._salt = s
        return s.to_bytes(8, "big")

    async def _receive(self, sock):
        st = self.stats
        while True:
            # One datagram per wake-up (readiness is level-triggered): never a read
            # that ends in EAGAIN, which would still cost an allocation on MicroPython.
            await _port.wait_readable(sock)
            try:
                data, addr = _port.recv_datagram(sock, self.bufsize)
            except OSError as e:
                if e.args and e.args[0] not in _EAGAIN:
                    st["recv_errors"] += 1
                continue
            except MemoryError:
                # A small heap ran out: this datagram is lost (its request times out and is
                # retried); the receiver must live on, or every later request would hang.
                st["no_memory"] += 1
                _port.collect()
                await _port.sleep_ms(10)
                continue
            st["received"] += 1
            st["bytes_in"] += len(data)
            try:
                if len(data) >= self.bufsize:
                    st["truncated"] += 1
                    self._too_big(data, addr)
                else:
                    self._dispatch(data, addr)
            except MemoryError:
                st["no_memory"] += 1
                st["dropped"] += 1
                data = None
                _port.collect()
            except Exception:  # never let one datagram stop the receiver
                st["dropped"] += 1

    def _dispatch(self, data, addr):
        try:
            if len(data) > MAX_MSG:
                raise BERError("message too large")
            if message_version(data) == 3:
                r = None
                m = _v3().decode_message(data)
            else:
                r = decode_response(data)
                r.size = len(data)
        except BERError:
            self.stats["malformed"] += 1
            self.stats["dropped"] += 1
            return
        if r is None:
            p = self._pending.get(m.msg_id)
            if p is not None and p.version == "3" and _from_peer(p, addr):
                r = self._open_v3(p, m)
            if r is None:
                self.stats["dropped"] += 1
                return
        else:
            p = self._pending.get(r.request_id)
            if (p is None or r.pdu_type != RESPONSE or not _from_peer(p, addr)
                    or p.community != r.community or p.version != r.version):
                self.stats["dropped"] += 1
                return
        if p.resp is not None:
            self.stats["dropped"] += 1
            return
        p.resp = r
        p.event.set()

    def _too_big(self, data, addr):
        """A reply longer than the receive buffer cannot be read: its request ends as if the agent
        had said tooBig, so the caller asks for fewer rows (then GETNEXT) instead of timing out.
        v1/v2c: matched on request id, version and community; v3 (only once a v3 engine is known:
        a v1/v2c-only client never loads the v3 code) on msgID, engine, user and level."""
        head = cut_head(data)
        if head is not None:
            p = self._pending.get(head[2])
            if p is not None and (p.version, p.community) != head[:2]:
                p = None
        else:
            p = _v3().cut_reply(self, data) if self._engines else None
        if p is None or p.resp is not None or not _from_peer(p, addr):
            self.stats["dropped"] += 1
            return
        _port.log("snmp", _port.WARN, "reply from %s over %d bytes: asking for less" % (p.host, self.bufsize))
        p.resp = Response(p.version, p.community, RESPONSE, p.rid, TOO_BIG, 0, [])
        p.event.set()

    def _send(self, sock, msg, addr):
        try:
            sock.sendto(msg, addr)
        except OSError:
            self.stats["send_errors"] += 1  # treated as a lost datagram
            return
        self.stats["sent"] += 1
        self.stats["bytes_out"] += len(msg)

    async def _throttle(self):
        """Token bucket: at most `rate` datagrams a second, bursts of `burst`."""
        rate = self.rate
        if not rate:
            return
        while True:
            now = _port.ticks_ms()
            self._tokens = min(self.burst, self._tokens + _port.ticks_diff(now, self._tok_at) * rate / 1000)
            self._tok_at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await _port.sleep_ms(int((1 - self._tokens) * 1000 / rate) + 1)

    async def _acquire(self):
        while self._inflight >= self.window:
            self._slot.clear()
            await self._slot.wait()
        self._inflight += 1

    def _release(self):
        self._inflight -= 1
        self._slot.set()

    async def _exchange(self, host, port, addr, cred, build, engine=None, discovery=False,
                        any_port=False):
        """Send build(request_id) and wait for the matching reply, with retries."""
        await self._acquire()
        rid = None
        try:
            sock = self._socket()
            rid = self._new_id()
            msg = build(rid)
            p = _Pending(_port.addr_key(addr), cred, rid, engine, discovery, any_port)
            p.host = host
            self._pending[rid] = p
            t = self.timeout_ms
            cap = self.timeout_ms * 8
            attempt = 0
            while True:
                await self._throttle()
                self._send(sock, msg, addr)
                try:
                    await asyncio.wait_for(p.event.wait(), t / 1000)
                except asyncio.TimeoutError:
                    pass
                if p.resp is not None:
                    return p.resp
                if attempt >= self.retries:
                    self.stats["timeouts"] += 1
                    raise Timeout("no reply from %s:%d" % (host, port))
                attempt += 1
                self.stats["retries"] += 1
                t = min(t * 2, cap)
        finally:
            if rid is not None:
                self._pending.pop(rid, None)
            self._release()

    async def request(self, host, pdu_type, oids, community=b"public", version="2c",
                      port=161, non_repeaters=0, max_repetitions=10, cred=None, any_port=False):
        """Send one PDU and return the matching Response (any error_status).
        Raises Timeout when no valid reply came after all retries. any_port: accept the
        reply from another source port of the same host (v1/v2c only; an explicit opt-in
        for agents such as Canon's on UDP 47545; never the default)."""
        cred = _credential(community, version, cred)
        addr = self._resolve(host, port)
        if cred.version == "3":
            return await self._request_v3(host, port, addr, cred, pdu_type, oids,
                                          non_repeaters, max_repetitions)

        def build(rid):
            return encode_request(cred.version, cred.community, pdu_type, rid, oids,
                                  non_repeaters, max_repetitions)
        return await self._exchange(host, port, addr, cred, build, any_port=any_port)

    # -- SNMPv3 (fleetbox.snmpv3, imported on first use)

    def _open_v3(self, p, m):
        return _v3().open_reply(self, p, m)

    async def _request_v3(self, host, port, addr, cred, pdu_type, oids, nr, mr):
        return await _v3().request(self, host, port, addr, cred, pdu_type, oids, nr, mr)

    async def _getlike(self, host, pdu_type, oids, cred, port, any_port=False):
        """GET/GETNEXT with v1 noSuchName and tooBig handling; results in request order."""
        oids = [oid_normalize(o) for o in oids]
        n = len(oids)
        out = [None] * n
        v1 = cred.version == "1"
        filler = NO_SUCH_OBJECT if pdu_type == GET else END_OF_MIB_VIEW
        work = [list(range(n))] if n else []
        while work:
            idx = work.pop()
            r = await self.request(host, pdu_type, [oids[i] for i in idx], port=port,
                                   cred=cred, any_port=any_port)
            st = r.error_status
            if st == 0:
                if len(r.varbinds) != len(idx):
                    raise SnmpError("reply has %d varbinds for %d requested"
                                    % (len(r.varbinds), len(idx)))
                for k in range(len(idx)):
                    out[idx[k]] = r.varbinds[k]
            elif st == TOO_BIG and len(idx) > 1:
                h = len(idx) // 2
                work.append(idx[h:])
                work.append(idx[:h])
            elif st == NO_SUCH_NAME and v1 and 1 <= r.error_index <= len(idx):
                k = r.error_index - 1
                out[idx[k]] = (oids[idx[k]], filler)
                rest = idx[:k] + idx[k + 1:]
                if rest:
                    work.append(rest)
            else:
                raise SnmpError("%s (index %d)" % (error_name(st), r.error_index),
                                st, r.error_index)
        return out

    # -- public API (community/version, or cred=Credential; a Credential may also be
    # passed in place of the community)

    async def get(self, host, oids, community=b"public", version="2c", port=161, cred=None,
                  any_port=False):
        return await self._getlike(host, GET, oids, _credential(community, version, cred), port,
                                   any_port)

    async def getnext(self, host, oids, community=b"public", version="2c", port=161,
                      cred=None, any_port=False):
        return await self._getlike(host, GETNEXT, oids, _credential(community, version, cred),
                                   port, any_port)

    async def getbulk(self, host, oids, non_repeaters=0, max_repetitions=10,
                      community=b"public", version="2c", port=161, cred=None, any_port=False):
        cred = _credential(community, version, cred)
        r = await self._bulk(host, [oid_normalize(o) for o in oids], non_repeaters,
                             max_repetitions, port, cred, any_port)
        return r.varbinds

    async def _bulk(self, host, oids, non_repeaters, max_repetitions, port, cred, any_port=False):
        if cred.version == "1":
            raise ValueError("GetBulk needs v2c or v3")
        r = await self.request(host, GETBULK, oids, port=port, non_repeaters=non_repeaters,
                               max_repetitions=max_repetitions, cred=cred, any_port=any_port)
        if r.error_status:
            raise SnmpError("%s (index %d)" % (error_name(r.error_status), r.error_index),
                            r.error_status, r.error_index)
        return r

    async def walk(self, host, root_oid, community=b"public", version="2c", port=161,
                   max_rows=10000, max_repetitions=10, cred=None, reply_budget=1400):
        """All (oid, value) strictly under root_oid, in agent order (see walk_each)."""
        out = []

        def keep(oid, value):
            out.append((oid, value))
        await self.walk_each(host, root_oid, keep, community, version, port, max_rows,
                             max_repetitions, cred, reply_budget)
        return out

    async def walk_each(self, host, root_oid, fn, community=b"public", version="2c",
                        port=161, max_rows=10000, max_repetitions=10, cred=None,
                        reply_budget=1400):
        """Call fn(oid, value) for each row strictly under root_oid, without keeping
        the rows; return how many there were (fleetbox.snmpwalk, loaded on first walk,
        says how it pages)."""
        cred = _credential(community, version, cred)
        from fleetbox import snmpwalk
        return await snmpwalk.walk_each(self, host, oid_normalize(root_oid), fn, cred, port,
                                        max_rows, max_repetitions, reply_budget)

    def close(self):
        rx = self._rx
        self._rx = None
        if rx is not None and not rx.done():
            try:
                rx.cancel()
            except RuntimeError:
                pass  # its loop is already closed
        if self._sock is not None:
            self._sock.close()
            self._sock = None

