"""SNMP v1/v2c/v3 messages and an asyncio client (one UDP socket, many requests in flight).

Runs on MicroPython and CPython; the runtime-specific "wait until the socket is
readable" lives in fleetbox.port. The client never listens: its one socket is an
unbound (ephemeral-port) UDP client socket.
"""
import asyncio
import socket
import errno

from fleetbox import port as _port
from fleetbox.errors import FleetboxError
from fleetbox.ber import (
    BERError, read_tlv, decode_int, decode_oid, decode_value, encode_int, tlv,
    encode_oid, encode_null, header_len, put_header, oid_normalize, oid_startswith, oid_arcs,
    is_exception, NO_SUCH_OBJECT, END_OF_MIB_VIEW,
    INTEGER, OCTET_STRING, OID, SEQUENCE, GET, GETNEXT, RESPONSE, SET, GETBULK, INFORM,
    TRAP, REPORT,
)

MAX_MSG = 65535
_PDUS = (GET, GETNEXT, RESPONSE, SET, GETBULK, INFORM, TRAP, REPORT)

ERROR_NAMES = (
    "noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr", "noAccess",
    "wrongType", "wrongLength", "wrongEncoding", "wrongValue", "noCreation",
    "inconsistentValue", "resourceUnavailable", "commitFailed", "undoFailed",
    "authorizationError", "notWritable", "inconsistentName",
)
TOO_BIG = 1
NO_SUCH_NAME = 2
_EAGAIN = (errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN))


def error_name(status):
    if 0 <= status < len(ERROR_NAMES):
        return ERROR_NAMES[status]
    return "error%d" % status


class SnmpError(FleetboxError):
    """Protocol-level failure. `status`/`index` are the PDU's error-status/index
    (0 when the failure is not an agent-reported error)."""

    def __init__(self, msg, status=0, index=0):
        super().__init__(msg)
        self.status = status
        self.index = index
        self.name = error_name(status) if status else msg


class Timeout(SnmpError):
    def __init__(self, msg):
        super().__init__(msg)
        self.name = "timeout"


def _wire_version(version):
    if version == "1" or version == 0:
        return 0
    if version == "2c" or version == 1:
        return 1
    if version == "3" or version == 3:
        return 3
    raise ValueError("unsupported SNMP version %r" % (version,))


def _bytes(community):
    return community.encode() if isinstance(community, str) else bytes(community)


class Credential:
    """How to talk to an agent: a v1/v2c community or a v3 USM user (+ context name).
    Build with Credential.v1(), .v2c() or .v3(); pass as `cred=` to the Client."""

    def __init__(self, version, community=b"", user=None, context=b""):
        self.version = "1" if _wire_version(version) == 0 else ("3" if version in ("3", 3) else "2c")
        if self.version == "3" and user is None:
            raise ValueError("an SNMPv3 credential needs a user: use Credential.v3()")
        self.community = _bytes(community)
        _port.secret(self.community)
        self.user = user
        self.context = _bytes(context)

    @staticmethod
    def v1(community=b"public"):
        return Credential("1", community)

    @staticmethod
    def v2c(community=b"public"):
        return Credential("2c", community)

    @staticmethod
    def v3(user, auth_proto=None, auth_pass=None, priv_proto=None, priv_pass=None,
           context=b"", auth_ku=None, priv_ku=None):
        """auth_proto: MD5, SHA, SHA224, SHA256, SHA384, SHA512 or None (noAuthNoPriv);
        priv_proto: AES, AES192, AES256 (net-snmp's key extension), AES192C, AES256C
        (Cisco's) or None (authNoPriv). auth_ku/priv_ku: master keys instead of the
        passphrases (see usm.User). Raises usm.UsmError on a bad value (DES too)."""
        usm = _usm()
        return Credential("3", b"", usm.User(user, auth_proto, auth_pass, priv_proto,
                                             priv_pass, auth_ku, priv_ku), context)

    def __repr__(self):
        if self.version == "3":
            return "Credential(v3 %r %s)" % (self.user.name, self.user.level)
        return "Credential(v%s)" % self.version


def _credential(community, version, cred):
    if cred is not None:
        return cred
    if isinstance(community, Credential):
        return community
    return Credential(version, community)


# ------------------------------------------------------------------- messages

class Response:
    """A decoded v1/v2c message (any PDU type except the v1 Trap-PDU)."""

    def __init__(self, version, community, pdu_type, request_id, error_status,
                 error_index, varbinds):
        self.version = version          # "1" or "2c"
        self.community = community      # bytes
        self.pdu_type = pdu_type        # int tag, e.g. ber.RESPONSE (0xA2)
        self.request_id = request_id
        self.error_status = error_status  # non_repeaters for a GetBulk PDU
        self.error_index = error_index    # max_repetitions for a GetBulk PDU
        self.varbinds = varbinds        # [(oid_str, value), ...]
        self.size = 0                   # octets of the datagram it came in (client replies)

    def __repr__(self):
        return "Response(v%s, %r, 0x%02x, id=%d, err=%d/%d, %r)" % (
            self.version, self.community, self.pdu_type, self.request_id,
            self.error_status, self.error_index, self.varbinds)


def encode_message(version, community, pdu_type, request_id, varbinds,
                   error_status=0, error_index=0):
    """Encode a message. `varbinds` is [(oid, encoded_value_tlv_bytes), ...].
    Sizes are computed first and everything is written into one buffer."""
    wv = _wire_version(version)
    if wv == 3:
        raise ValueError("SNMPv3 messages are built by the Client (see usm.encode_message)")
    ver = encode_int(wv)
    if pdu_type == GETBULK and wv == 0:
        raise ValueError("GetBulk needs v2c")
    community = _bytes(community)
    vbs = []
    vbl = 0
    for o, v in varbinds:
        eo = encode_oid(o)
        n = len(eo) + len(v)
        vbs.append((eo, v, n))
        vbl += header_len(n) + n
    ints = encode_int(request_id) + encode_int(error_status) + encode_int(error_index)
    pdu = len(ints) + header_len(vbl) + vbl
    msg = len(ver) + header_len(len(community)) + len(community) + header_len(pdu) + pdu
    out = bytearray(header_len(msg) + msg)
    p = put_header(out, 0, SEQUENCE, msg)
    out[p:p + len(ver)] = ver
    p = put_header(out, p + len(ver), OCTET_STRING, len(community))
    out[p:p + len(community)] = community
    p = put_header(out, p + len(community), pdu_type, pdu)
    out[p:p + len(ints)] = ints
    p = put_header(out, p + len(ints), SEQUENCE, vbl)
    for eo, v, n in vbs:
        p = put_header(out, p, SEQUENCE, n)
        out[p:p + len(eo)] = eo
        p += len(eo)
        out[p:p + len(v)] = v
        p += len(v)
    return bytes(out)


def encode_request(version, community, pdu_type, request_id, oids,
                   non_repeaters=0, max_repetitions=10):
    null = encode_null()
    vbs = [(o, null) for o in oids]
    if pdu_type == GETBULK:
        return encode_message(version, community, pdu_type, request_id, vbs,
                              non_repeaters, max_repetitions)
    return encode_message(version, community, pdu_type, request_id, vbs)


def encode_pdu(pdu_type, request_id, oids, non_repeaters=0, max_repetitions=10):
    """A request PDU alone (the data of an SNMPv3 ScopedPDU)."""
    null = encode_null()
    vbl = b"".join(tlv(SEQUENCE, encode_oid(o) + null) for o in oids)
    a, b = (non_repeaters, max_repetitions) if pdu_type == GETBULK else (0, 0)
    return tlv(pdu_type, encode_int(request_id) + encode_int(a) + encode_int(b) + tlv(SEQUENCE, vbl))


def _expect(b, pos, end, tag):
    t, s, e = read_tlv(b, pos, end)
    if t != tag:
        raise BERError("expected tag 0x%02x, got 0x%02x" % (tag, t))
    return s, e


def decode_response(data):
    """Decode a v1/v2c message; raises BERError (only) on anything malformed."""
    n = len(data)
    if n > MAX_MSG:
        raise BERError("message too large")
    b = memoryview(data)
    s, e = _expect(b, 0, n, SEQUENCE)
    if e != n:
        raise BERError("trailing data")
    s1, e1 = _expect(b, s, e, INTEGER)
    ver = decode_int(b, s1, e1)
    if ver != 0 and ver != 1:
        raise BERError("unsupported version %d" % ver)
    s2, e2 = _expect(b, e1, e, OCTET_STRING)
    community = bytes(b[s2:e2])
    pdu_type, rid, es, ei, varbinds = decode_pdu(b, e2, e)
    return Response("1" if ver == 0 else "2c", community, pdu_type, rid, es, ei, varbinds)


def decode_pdu(b, pos, e):
    """The PDU filling b[pos:e] -> (pdu_type, request_id, error_status, error_index, varbinds)."""
    pdu_type, ps, pe = read_tlv(b, pos, e)
    if pdu_type not in _PDUS:
        raise BERError("unsupported PDU 0x%02x" % pdu_type)
    if pe != e:
        raise BERError("trailing data")
    s, p = _expect(b, ps, pe, INTEGER)
    rid = decode_int(b, s, p)
    s, p2 = _expect(b, p, pe, INTEGER)
    es = decode_int(b, s, p2)
    s, p = _expect(b, p2, pe, INTEGER)
    ei = decode_int(b, s, p)
    vs, ve = _expect(b, p, pe, SEQUENCE)
    if ve != pe:
        raise BERError("trailing data")
    varbinds = []
    p = vs
    while p < ve:
        s, p = _expect(b, p, ve, SEQUENCE)
        os_, oe = _expect(b, s, p, OID)
        oid = decode_oid(b, os_, oe)
        t, xs, xe = read_tlv(b, oe, p)
        if xe != p:
            raise BERError("trailing data in varbind")
        varbinds.append((oid, decode_value(t, b, xs, xe)))
    return pdu_type, rid, es, ei, varbinds


def message_version(data):
    """The wire version of a message (0, 1, 3, ...); BERError when it has none."""
    b = memoryview(data)
    s, e = _expect(b, 0, len(b), SEQUENCE)
    s1, e1 = _expect(b, s, e, INTEGER)
    return decode_int(b, s1, e1)


# --------------------------------------------------------------------- client

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


ID_MAX = 0x7FFF   # request ids 1..32767: two octets on the wire instead of four, both ways


def _seed_id():
    b = _port.urandom(2)
    return (((b[0] << 8) | b[1]) % ID_MAX) + 1


def _usm():
    """fleetbox.usm, imported on first SNMPv3 use: a v1/v2c-only site keeps its ~17 KB."""
    from fleetbox import usm
    return usm


def discovery_request(msg_id, max_size):
    """The SNMPv3 engine discovery request (RFC 3414 4): a noAuthNoPriv GET with an empty
    user and no varbinds, which any v3 agent answers with an unknownEngineIDs report
    carrying its engine ID, boots and time. No secret travels."""
    usm = _usm()
    scoped = usm.encode_scoped(b"", b"", encode_pdu(GET, msg_id, []))
    return usm.encode_message(msg_id, max_size, usm.User(b""), b"", 0, 0, scoped)


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
        self._salt = int.from_bytes(_port.urandom(8), "big")
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
        """The next free request id. 32767 of them: far more than a window in flight, and
        an id comes round again only after 32767 requests, long after any late reply to
        its last use (v1/v2c replies are also matched on address, port and community;
        v3 ones are authenticated)."""
        rid = self._next_id
        while rid in self._pending:
            rid = rid % ID_MAX + 1
        self._next_id = rid % ID_MAX + 1
        return rid

    def _new_salt(self):
        self._salt = (self._salt + 1) & 0xFFFFFFFFFFFFFFFF
        return self._salt.to_bytes(8, "big")

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
            if len(data) >= self.bufsize:
                st["truncated"] += 1
            try:
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
                m = _usm().decode_message(data)
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

    def _open_v3(self, p, m):
        """Check the security of an SNMPv3 reply to p and decode it: a Response (with
        .usm = the message) or None when it must be dropped (RFC 3414 3.2)."""
        usm = _usm()
        user = p.cred.user
        st = self.stats
        authed = m.flags & usm.FLAG_AUTH
        if p.discovery:
            if authed or m.flags & usm.FLAG_PRIV or not m.engine_id:
                return None
        elif authed:
            if (not user.auth or m.user != user.name
                    or m.engine_id != p.engine.engine_id):
                return None
            if not usm.verify(m, user):
                st["auth_failures"] += 1
                return None
        elif m.flags & usm.FLAG_PRIV:
            return None
        try:
            if m.encrypted is not None:
                if not (authed and m.flags & usm.FLAG_PRIV and user.priv):
                    return None
                b = usm.decrypt(m, user)
                s, e = 0, len(b)
            elif m.flags & usm.FLAG_PRIV:
                return None
            else:
                b = m.data
                s, e = m.scoped
            b = memoryview(b)
            _, _, ps, pe = usm.decode_scoped(b, s, e)
            pdu_type, rid, es, ei, vbs = decode_pdu(b, ps, pe)
        except BERError:
            st["malformed"] += 1
            return None
        if pdu_type == REPORT:
            pass  # unauthenticated reports are all an agent can send to a stranger
        elif pdu_type != RESPONSE or p.discovery or rid != p.rid:
            return None
        elif (m.flags & 3) != user.flags:
            return None  # not at the security level asked for
        elif authed and not p.engine.in_window(m.boots, m.time):
            st["not_in_time_window"] += 1
            return None
        r = Response("3", b"", pdu_type, rid, es, ei, vbs)
        r.usm = m
        r.size = len(m.data)
        return r

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

    # -- SNMPv3

    async def _discover(self, host, port, addr, cred):
        """Learn the agent's engine ID, boots and time from its unknownEngineIDs report
        (RFC 3414 4): a noAuthNoPriv GET with no varbinds and an empty user."""
        self.stats["discoveries"] += 1
        usm = _usm()

        def build(rid):
            return discovery_request(rid, self.bufsize)
        r = await self._exchange(host, port, addr, cred, build, discovery=True)
        m = r.usm
        eng = usm.Engine(m.engine_id, m.boots, m.time)
        key = _port.addr_key(addr)
        if len(self._engines) >= self.MAX_ENGINES and key not in self._engines:
            self._engines.pop(next(iter(self._engines)))
        self._engines[key] = eng
        return eng

    async def _request_v3(self, host, port, addr, cred, pdu_type, oids, nr, mr):
        usm = _usm()
        user = cred.user
        key = _port.addr_key(addr)
        eng = self._engines.get(key)
        for _ in range(4):
            if eng is None:
                eng = await self._discover(host, port, addr, cred)

            def build(rid, eng=eng):
                boots, t = eng.now()
                scoped = usm.encode_scoped(eng.engine_id, cred.context,
                                           encode_pdu(pdu_type, rid, oids, nr, mr))
                return usm.encode_message(rid, self.bufsize, user, eng.engine_id, boots, t,
                                          scoped, self._new_salt() if user.priv else None)
            r = await self._exchange(host, port, addr, cred, build, eng)
            if r.pdu_type != REPORT:
                return r
            oid = r.varbinds[0][0] if r.varbinds else ""
            name = usm.REPORT_NAMES.get(oid, "report " + oid)
            m = r.usm
            if oid == usm.NOT_IN_TIME_WINDOW and m.flags & usm.FLAG_AUTH:
                eng.set_time(m.boots, m.time)
                continue
            if oid == usm.UNKNOWN_ENGINE_ID:
                self._engines.pop(key, None)
                eng = None
                continue
            hint = ""
            if name == "decryptionErrors":
                hint = " (if %s:%d is set to DES privacy: DES is not supported, set it to AES)" % (host, port)
            e = SnmpError("%s:%d refused SNMPv3 user %r (%s): %s%s" % (
                host, port, user.name.decode(), user.level, name, hint))
            e.name = name
            raise e
        e = SnmpError("%s:%d: SNMPv3 time/engine synchronisation failed" % (host, port))
        e.name = "notInTimeWindows"
        raise e

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
        the rows; return how many there were. GETNEXT on v1. GETBULK on v2c/v3: it
        starts at max_repetitions and, while pages come back full, grows (at most
        doubling) to as many rows as the rows seen so far fit in reply_budget octets
        (1400: one Ethernet frame, no IP fragments; 0 = never grow); it halves on
        tooBig, and after a timeout once the agent has answered, and then grows no
        more. Stops at the end of the subtree, endOfMibView, a non-increasing OID or
        max_rows."""
        cred = _credential(community, version, cred)
        root = oid_normalize(root_oid)
        last = oid_arcs(root)
        cur = root
        count = 0
        v1 = cred.version == "1"
        mr = max(1, max_repetitions)
        answered = False
        while count < max_rows:
            try:
                if v1:
                    vbs = await self.getnext(host, [cur], port=port, cred=cred)
                else:
                    asked = min(mr, max_rows - count)
                    r = await self._bulk(host, [cur], 0, asked, port, cred)
                    vbs = r.varbinds
            except Timeout:
                if v1 or not answered or mr == 1:
                    raise
                mr //= 2
                reply_budget = 0
                continue
            except SnmpError as e:
                if v1 or e.status != TOO_BIG or mr == 1:
                    raise
                mr //= 2
                reply_budget = 0
                continue
            answered = True
            if not vbs:
                break
            if not v1 and reply_budget and len(vbs) >= asked and r.size:
                fit = reply_budget * len(vbs) // r.size
                if fit > mr:
                    mr = min(fit, 2 * mr)
            for oid, val in vbs:
                if is_exception(val) or not oid_startswith(oid, root):
                    return count
                t = oid_arcs(oid)
                if t <= last:
                    return count
                fn(oid, val)
                count += 1
                last = t
                cur = oid
                if count >= max_rows:
                    break
        return count

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

