"""SNMP v1/v2c messages and an asyncio client (one UDP socket, many requests in flight).

Runs on MicroPython and CPython; the runtime-specific "wait until the socket is
readable" lives in fleetbox.port. The client never listens: its one socket is an
unbound (ephemeral-port) UDP client socket.
"""
import asyncio
import socket
import errno

from fleetbox import port as _port
from fleetbox.ber import (
    BERError, read_tlv, decode_int, decode_oid, decode_value, encode_int,
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


class SnmpError(Exception):
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
    raise ValueError("unsupported SNMP version %r" % (version,))


def _bytes(community):
    return community.encode() if isinstance(community, str) else bytes(community)


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

    def __repr__(self):
        return "Response(v%s, %r, 0x%02x, id=%d, err=%d/%d, %r)" % (
            self.version, self.community, self.pdu_type, self.request_id,
            self.error_status, self.error_index, self.varbinds)


def encode_message(version, community, pdu_type, request_id, varbinds,
                   error_status=0, error_index=0):
    """Encode a message. `varbinds` is [(oid, encoded_value_tlv_bytes), ...].
    Sizes are computed first and everything is written into one buffer."""
    ver = encode_int(_wire_version(version))
    if pdu_type == GETBULK and ver[2] == 0:
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
    pdu_type, ps, pe = read_tlv(b, e2, e)
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
    return Response("1" if ver == 0 else "2c", community, pdu_type, rid, es, ei, varbinds)


# --------------------------------------------------------------------- client

class _Pending:
    def __init__(self, key, community, version):
        self.key = key
        self.community = community
        self.version = version
        self.resp = None
        self.event = asyncio.Event()


def _seed_id():
    b = _port.urandom(4)
    return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) & 0x7FFFFFFF


class Client:
    """Asynchronous SNMP v1/v2c manager.

    timeout_ms: first attempt's timeout; it doubles on each retry, capped at 8x.
    retries:    retransmissions (same request id) after the first attempt.
    window:     most requests in flight at once; more callers wait their turn.
    bufsize:    largest datagram accepted (bigger replies are truncated, counted and
                dropped). On MicroPython only the reply's own size is allocated.
    """

    def __init__(self, timeout_ms=1000, retries=1, window=64, bufsize=8192):
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.window = max(1, window)
        self.bufsize = bufsize
        self.stats = {"sent": 0, "received": 0, "dropped": 0, "malformed": 0,
                      "timeouts": 0, "retries": 0, "bytes_out": 0, "bytes_in": 0,
                      "send_errors": 0, "recv_errors": 0, "truncated": 0}
        self._sock = None
        self._rx = None
        self._pending = {}
        self._next_id = _seed_id()
        self._inflight = 0
        self._slot = asyncio.Event()
        self._addr_cache = None

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
        rid = self._next_id
        while rid in self._pending:
            rid = (rid + 1) & 0x7FFFFFFF
        self._next_id = (rid + 1) & 0x7FFFFFFF
        return rid

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
            st["received"] += 1
            st["bytes_in"] += len(data)
            if len(data) >= self.bufsize:
                st["truncated"] += 1
            try:
                self._dispatch(data, addr)
            except Exception:  # never let one datagram stop the receiver
                st["dropped"] += 1

    def _dispatch(self, data, addr):
        try:
            r = decode_response(data)
        except BERError:
            self.stats["malformed"] += 1
            self.stats["dropped"] += 1
            return
        p = self._pending.get(r.request_id)
        if (p is None or p.resp is not None or r.pdu_type != RESPONSE
                or p.key != _port.addr_key(addr) or p.community != r.community
                or p.version != r.version):
            self.stats["dropped"] += 1
            return
        p.resp = r
        p.event.set()

    def _send(self, sock, msg, addr):
        try:
            sock.sendto(msg, addr)
        except OSError:
            self.stats["send_errors"] += 1  # treated as a lost datagram
            return
        self.stats["sent"] += 1
        self.stats["bytes_out"] += len(msg)

    async def _acquire(self):
        while self._inflight >= self.window:
            self._slot.clear()
            await self._slot.wait()
        self._inflight += 1

    def _release(self):
        self._inflight -= 1
        self._slot.set()

    async def request(self, host, pdu_type, oids, community=b"public", version="2c",
                      port=161, non_repeaters=0, max_repetitions=10):
        """Send one PDU and return the matching Response (any error_status).
        Raises Timeout when no valid reply came after all retries."""
        community = _bytes(community)
        addr = self._resolve(host, port)
        await self._acquire()
        rid = None
        try:
            sock = self._socket()
            rid = self._new_id()
            msg = encode_request(version, community, pdu_type, rid, oids,
                                 non_repeaters, max_repetitions)
            p = _Pending(_port.addr_key(addr), community, "1" if _wire_version(version) == 0 else "2c")
            self._pending[rid] = p
            t = self.timeout_ms
            cap = self.timeout_ms * 8
            attempt = 0
            while True:
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

    async def _getlike(self, host, pdu_type, oids, community, version, port):
        """GET/GETNEXT with v1 noSuchName and tooBig handling; results in request order."""
        oids = [oid_normalize(o) for o in oids]
        n = len(oids)
        out = [None] * n
        v1 = _wire_version(version) == 0
        filler = NO_SUCH_OBJECT if pdu_type == GET else END_OF_MIB_VIEW
        work = [list(range(n))] if n else []
        while work:
            idx = work.pop()
            r = await self.request(host, pdu_type, [oids[i] for i in idx], community,
                                   version, port)
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

    # -- public API

    async def get(self, host, oids, community=b"public", version="2c", port=161):
        return await self._getlike(host, GET, oids, community, version, port)

    async def getnext(self, host, oids, community=b"public", version="2c", port=161):
        return await self._getlike(host, GETNEXT, oids, community, version, port)

    async def getbulk(self, host, oids, non_repeaters=0, max_repetitions=10,
                      community=b"public", version="2c", port=161):
        if _wire_version(version) == 0:
            raise ValueError("GetBulk needs v2c")
        oids = [oid_normalize(o) for o in oids]
        r = await self.request(host, GETBULK, oids, community, version, port,
                               non_repeaters, max_repetitions)
        if r.error_status:
            raise SnmpError("%s (index %d)" % (error_name(r.error_status), r.error_index),
                            r.error_status, r.error_index)
        return r.varbinds

    async def walk(self, host, root_oid, community=b"public", version="2c", port=161,
                   max_rows=10000, max_repetitions=10):
        """All (oid, value) strictly under root_oid, in agent order (see walk_each)."""
        out = []

        def keep(oid, value):
            out.append((oid, value))
        await self.walk_each(host, root_oid, keep, community, version, port, max_rows,
                             max_repetitions)
        return out

    async def walk_each(self, host, root_oid, fn, community=b"public", version="2c",
                        port=161, max_rows=10000, max_repetitions=10):
        """Call fn(oid, value) for each row strictly under root_oid, without keeping
        the rows; return how many there were. GETBULK on v2c (max_repetitions halves
        after a timeout once the agent has answered), GETNEXT on v1. Stops at the end
        of the subtree, endOfMibView, a non-increasing OID or max_rows."""
        root = oid_normalize(root_oid)
        last = oid_arcs(root)
        cur = root
        count = 0
        v1 = _wire_version(version) == 0
        mr = max(1, max_repetitions)
        answered = False
        while count < max_rows:
            try:
                if v1:
                    vbs = await self.getnext(host, [cur], community, version, port)
                else:
                    vbs = await self.getbulk(host, [cur], 0, min(mr, max_rows - count),
                                             community, version, port)
            except Timeout:
                if v1 or not answered or mr == 1:
                    raise
                mr //= 2
                continue
            answered = True
            if not vbs:
                break
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

