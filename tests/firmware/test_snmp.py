"""SNMP messages and the asyncio client, against an in-process fake agent.

Runs on CPython (pytest) and MicroPython (tests/mprun.py). The fake agent is test
code: it binds a UDP socket on 127.0.0.1 (the firmware itself never does).
"""
import asyncio
import random
import socket
import time

from fleetbox import ber, snmp
from fleetbox import port as fbport
from fleetbox.ber import BERError
from check import LogCapture, raises


def h(s):
    return bytes.fromhex(s.replace(" ", ""))


# ------------------------------------------------------------------ messages

# Bytes captured with `snmpget -d` / `snmpbulkget -d` (net-snmp 5.9).
GET_V2C = h("30 29 02 01 01 04 06 70 75 62 6C 69 63 A0 1C 02 04 65 2F 68 ED 02 01 00 02 01 00"
            " 30 0E 30 0C 06 08 2B 06 01 02 01 01 01 00 05 00")
GET_V1 = h("30 3B 02 01 00 04 07 70 72 69 76 61 74 65 A0 2D 02 04 0C BD 2A 54 02 01 00 02 01 00"
           " 30 1F 30 0C 06 08 2B 06 01 02 01 01 05 00 05 00 30 0F 06 0B 2B 06 01 02 01 19 03 02"
           " 01 03 01 05 00")
BULK = h("30 39 02 01 01 04 06 70 75 62 6C 69 63 A5 2C 02 04 1F E1 7B 1C 02 01 01 02 01 19 30"
         " 1E 30 0C 06 08 2B 06 01 02 01 01 03 00 05 00 30 0E 06 0A 2B 06 01 02 01 2B 0B 01 01"
         " 09 05 00")
# snmpd's reply to GET sysLocation.0, sysORLastChange-ish (.1.7.0), .1.9.9.9, sysUpTime.0
RESP = h("30 57 02 01 01 04 06 70 75 62 6C 69 63 A2 4A 02 03 16 B8 BA 02 01 00 02 01 00 30 3D"
         " 30 0F 06 08 2B 06 01 02 01 01 06 00 04 03 6C 61 62 30 0C 06 08 2B 06 01 02 01 01 07"
         " 00 81 00 30 0D 06 09 2B 06 01 02 01 01 09 09 09 80 00 30 0D 06 08 2B 06 01 02 01 01"
         " 03 00 43 01 64")


def test_encode_request_matches_net_snmp():
    assert snmp.encode_request("2c", b"public", ber.GET, 0x652F68ED, ["1.3.6.1.2.1.1.1.0"]) == GET_V2C
    assert snmp.encode_request("1", "private", ber.GET, 0x0CBD2A54,
                               ["1.3.6.1.2.1.1.5.0", ".1.3.6.1.2.1.25.3.2.1.3.1"]) == GET_V1
    assert snmp.encode_request("2c", b"public", ber.GETBULK, 0x1FE17B1C,
                               ["1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.43.11.1.1.9"], 1, 25) == BULK
    raises(ValueError, snmp.encode_request, "1", b"public", ber.GETBULK, 1, ["1.3"])
    raises(ValueError, snmp.encode_request, "3", b"public", ber.GET, 1, ["1.3"])


def test_decode_requests_and_response():
    r = snmp.decode_response(GET_V1)
    assert (r.version, r.community, r.pdu_type, r.request_id) == ("1", b"private", ber.GET, 0x0CBD2A54)
    assert r.varbinds == [("1.3.6.1.2.1.1.5.0", None), ("1.3.6.1.2.1.25.3.2.1.3.1", None)]
    r = snmp.decode_response(BULK)
    assert (r.pdu_type, r.error_status, r.error_index) == (ber.GETBULK, 1, 25)
    r = snmp.decode_response(RESP)
    assert (r.version, r.community, r.pdu_type, r.request_id) == ("2c", b"public", ber.RESPONSE, 0x16B8BA)
    assert r.error_status == 0 and r.error_index == 0
    assert r.varbinds[0] == ("1.3.6.1.2.1.1.6.0", b"lab")
    assert r.varbinds[1][1] is ber.NO_SUCH_INSTANCE
    assert r.varbinds[2] == ("1.3.6.1.2.1.1.9.9.9", ber.NO_SUCH_OBJECT)
    assert r.varbinds[3] == ("1.3.6.1.2.1.1.3.0", 100)


def test_message_round_trip_all_types():
    vbs = [("1.3.6.1.2.1.1.1.0", ber.encode_octets(b"Printer")),
           ("1.3.6.1.2.1.1.2.0", ber.encode_oid("1.3.6.1.4.1.2435.2.3.9.1")),
           ("1.3.6.1.2.1.1.3.0", ber.encode_timeticks(217539735)),
           ("1.3.6.1.2.1.4.20.1.1.10.0.0.5", ber.encode_ip("10.0.0.5")),
           ("1.3.6.1.2.1.2.2.1.10.1", ber.encode_counter32(4000000000)),
           ("1.3.6.1.2.1.2.2.1.5.1", ber.encode_gauge32(1000000000)),
           ("1.3.6.1.2.1.31.1.1.1.6.1", ber.encode_counter64(2 ** 63 + 5)),
           ("1.3.6.1.2.1.43.11.1.1.9.1.1", ber.encode_int(-3)),
           ("1.3.6.1.4.1.1.1", ber.encode_octets(b"\x9f\x78\x04\x3f\x80\x00\x00", ber.OPAQUE)),
           ("1.3.6.1.4.1.1.2", ber.encode_null()),
           ("1.3.6.1.4.1.1.3", ber.encode_exception(ber.NO_SUCH_OBJECT)),
           ("1.3.6.1.4.1.1.4", ber.encode_exception(ber.NO_SUCH_INSTANCE)),
           ("1.3.6.1.4.1.1.5", ber.encode_exception(ber.END_OF_MIB_VIEW))]
    msg = snmp.encode_message("2c", b"c", ber.RESPONSE, 2 ** 31 - 1, vbs, 0, 0)
    r = snmp.decode_response(msg)
    assert r.request_id == 2 ** 31 - 1
    assert [o for o, v in r.varbinds] == [o for o, v in vbs]
    vals = [v for o, v in r.varbinds]
    assert vals[:9] == [b"Printer", "1.3.6.1.4.1.2435.2.3.9.1", 217539735, "10.0.0.5", 4000000000,
                        1000000000, 2 ** 63 + 5, -3, b"\x9f\x78\x04\x3f\x80\x00\x00"]
    assert vals[9] is None
    assert vals[10] is ber.NO_SUCH_OBJECT and vals[11] is ber.NO_SUCH_INSTANCE
    assert vals[12] is ber.END_OF_MIB_VIEW
    r = snmp.decode_response(snmp.encode_message("1", b"x", ber.RESPONSE, 7, vbs[:1], 2, 1))
    assert (r.version, r.error_status, r.error_index) == ("1", 2, 1)


def test_decode_response_rejects_garbage_with_bererror():
    bad = [b"", b"\x30\x00", GET_V2C[:-1], GET_V2C + b"\x00", b"\x04\x00",
           h("3006 020103 040100"),                       # SNMPv3 version number
           ber.tlv(0x30, ber.encode_int(1) + ber.encode_octets(b"p") + ber.tlv(0xA4, b"")),  # v1 trap
           ber.tlv(0x30, ber.encode_int(1) + ber.encode_octets(b"p")),
           ber.tlv(0x30, ber.encode_int(1) + ber.encode_octets(b"p") + ber.tlv(0xA2, ber.encode_int(1))),
           ber.tlv(0x30, ber.encode_int(1) + ber.encode_oid("1.3") + ber.tlv(0xA2, b"")),
           b"\x30\x84\x7f\xff\xff\xff" + b"\x00" * 10, b"\x30\x80" + GET_V2C[2:],
           b"\x30" + ber.encode_length(70000)[0:] + b"\x00" * 70000]
    # a varbind holding three elements, and one whose name is not an OID
    vb3 = ber.tlv(0x30, ber.encode_oid("1.3") + ber.encode_null() + ber.encode_null())
    vbx = ber.tlv(0x30, ber.encode_int(5) + ber.encode_null())
    for vb in (vb3, vbx, ber.encode_null()):
        pdu = ber.tlv(0xA2, ber.encode_int(1) + ber.encode_int(0) + ber.encode_int(0) + ber.tlv(0x30, vb))
        bad.append(ber.tlv(0x30, ber.encode_int(1) + ber.encode_octets(b"p") + pdu))
    for data in bad:
        raises(BERError, snmp.decode_response, data)
    for n in range(len(RESP)):
        raises(BERError, snmp.decode_response, RESP[:n])


def test_decode_response_random_mutations():
    rnd = random.Random(1) if hasattr(random, "Random") else None
    rb = rnd.getrandbits if rnd else random.getrandbits
    if not rnd:
        random.seed(1)
    for _i in range(3000):
        m = bytearray(RESP)
        for _k in range(1 + rb(2)):
            m[rb(8) % len(m)] = rb(8)
        try:
            snmp.decode_response(bytes(m))
        except BERError:
            pass
    for _i in range(300):
        junk = bytes(rb(8) for k in range(rb(7)))
        try:
            snmp.decode_response(junk)
        except BERError:
            pass


def test_snmp_error_names():
    e = snmp.SnmpError("x", 2, 1)
    assert e.name == "noSuchName" and e.status == 2 and e.index == 1
    assert snmp.error_name(1) == "tooBig" and snmp.error_name(5) == "genErr"
    assert snmp.error_name(99) == "error99"
    assert issubclass(snmp.Timeout, snmp.SnmpError)


# ---------------------------------------------------------------- fake agent

def _addr(port):
    return socket.getaddrinfo("127.0.0.1", port, socket.AF_INET, socket.SOCK_DGRAM)[0][-1]


def _oidkey(o):
    return ber.oid_to_tuple(o)


class Agent:
    """A tiny SNMP agent for tests: answers GET/GETNEXT/GETBULK from `mib`
    ({oid: encoded value}); hooks let tests drop, delay or forge replies."""

    def __init__(self, mib, community=b"public", max_varbinds=0):
        self.rows = sorted(((_oidkey(o), o, v) for o, v in mib.items()), key=lambda r: r[0])
        self.mib = dict((o, v) for k, o, v in self.rows)
        self.community = community
        self.max_varbinds = max_varbinds   # > 0: answer tooBig above this many varbinds
        self.max_bulk = 0                  # > 0: answer tooBig to GETBULKs asking for more rows
        self.requests = []                 # (Response, addr_key)
        self.drop = 0                      # silently drop the next N requests
        self.drop_if = None                # fn(req) -> True to drop
        self.forge = None                  # fn(agent, req, reply_bytes, addr) -> send extra datagrams
        self.hold = 0                      # ms to hold each reply (replies sent in reverse order)
        self.held = []
        self.max_held = 0
        self.reply_from = None             # name of the socket replies go out of ("other": a high port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _i in range(100):
            self.port = 20000 + (random.getrandbits(16) % 40000)
            try:
                self.sock.bind(_addr(self.port))
                break
            except OSError:
                continue
        self.sock.setblocking(False)
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # replies from a wrong port
        self.elsewhere = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # same port, wrong address
        try:
            self.elsewhere.bind(socket.getaddrinfo("127.0.0.2", self.port, socket.AF_INET,
                                                   socket.SOCK_DGRAM)[0][-1])
        except OSError:
            pass  # port taken there (rare): it then sends from an ephemeral port instead
        self.task = None

    def start(self):
        self.task = asyncio.create_task(self._run())

    async def stop(self):
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except BaseException:
                pass
        self.sock.close()
        self.other.close()
        self.elsewhere.close()

    async def _run(self):
        while True:
            await fbport.wait_readable(self.sock)
            while True:
                try:
                    data, addr = self.sock.recvfrom(4096)
                except OSError:
                    break
                self._handle(data, addr)

    def _next(self, oid):
        k = _oidkey(oid)
        for rk, ro, rv in self.rows:
            if rk > k:
                return ro, rv
        return None

    def answer(self, req):
        v1 = req.version == "1"
        oids = [o for o, v in req.varbinds]
        if self.max_varbinds and len(oids) > self.max_varbinds:
            return [(o, ber.encode_null()) for o in oids], 1, 0
        if self.max_bulk and req.pdu_type == ber.GETBULK and req.error_index > self.max_bulk:
            return [(o, ber.encode_null()) for o in oids], 1, 0
        out = []
        if req.pdu_type == ber.GET:
            for i, o in enumerate(oids):
                if o in self.mib:
                    out.append((o, self.mib[o]))
                elif v1:
                    return [(o, ber.encode_null()) for o in oids], 2, i + 1
                else:
                    out.append((o, ber.encode_exception(ber.NO_SUCH_OBJECT)))
        elif req.pdu_type == ber.GETNEXT:
            for i, o in enumerate(oids):
                n = self._next(o)
                if n:
                    out.append(n)
                elif v1:
                    return [(o, ber.encode_null()) for o in oids], 2, i + 1
                else:
                    out.append((o, ber.encode_exception(ber.END_OF_MIB_VIEW)))
        elif req.pdu_type == ber.GETBULK:
            nr, mr = req.error_status, req.error_index
            for o in oids[:nr]:
                out.append(self._next(o) or (o, ber.encode_exception(ber.END_OF_MIB_VIEW)))
            cur = oids[nr:]
            for _r in range(mr):
                if not cur:
                    break
                nxt = []
                for o in cur:
                    n = self._next(o) or (o, ber.encode_exception(ber.END_OF_MIB_VIEW))
                    out.append(n)
                    nxt.append(n[0])
                cur = nxt
        return out, 0, 0

    def _handle(self, data, addr):
        req = snmp.decode_response(data)
        self.requests.append((req, fbport.addr_key(addr)))
        if req.community != self.community:
            return
        if self.drop:
            self.drop -= 1
            return
        if self.drop_if and self.drop_if(req):
            return
        vbs, es, ei = self.answer(req)
        reply = snmp.encode_message(req.version, req.community, ber.RESPONSE, req.request_id, vbs, es, ei)
        if self.forge:
            self.forge(self, req, reply, addr)
        if self.hold:
            self.held.append((reply, addr))
            self.max_held = max(self.max_held, len(self.held))
            if len(self.held) == 1:
                asyncio.create_task(self._release())
        elif self.reply_from:
            getattr(self, self.reply_from).sendto(reply, addr)
        else:
            self.sock.sendto(reply, addr)

    async def _release(self):
        await asyncio.sleep(self.hold / 1000)
        held, self.held = self.held, []
        for reply, addr in reversed(held):
            self.sock.sendto(reply, addr)


SYS = "1.3.6.1.2.1.1"
MIB = {
    SYS + ".1.0": ber.encode_octets(b"Fake printer"),
    SYS + ".2.0": ber.encode_oid("1.3.6.1.4.1.2435.2.3.9.1"),
    SYS + ".3.0": ber.encode_timeticks(12345),
    SYS + ".5.0": ber.encode_octets(b"fb-test"),
    "1.3.6.1.2.1.4.20.1.1.10.0.0.5": ber.encode_ip("10.0.0.5"),
    "1.3.6.1.2.1.43.10.2.1.4.1.1": ber.encode_counter32(123456),
    "1.3.6.1.2.1.43.11.1.1.9.1.1": ber.encode_int(-3),
    "1.3.6.1.2.1.43.11.1.1.9.1.2": ber.encode_int(80),
    "1.3.6.1.2.1.43.11.1.1.9.1.10": ber.encode_int(40),
    "1.3.6.1.2.1.43.11.1.1.9.1.3": ber.encode_int(55),
    "1.3.6.1.2.1.43.11.1.1.90.1.1": ber.encode_int(1),
    "1.3.6.1.4.1.1.64": ber.encode_counter64(2 ** 40),
}
for _i in range(60):
    MIB["1.3.6.1.2.1.2.2.1.2.%d" % (_i + 1)] = ber.encode_octets(b"if%d" % _i)


def run(coro_fn, mib=MIB, **client_kw):
    """Start an agent and a client, run coro_fn(client, agent), clean up; return its result."""
    async def main():
        agent = Agent(mib)
        agent.start()
        kw = {"timeout_ms": 300, "retries": 1}
        kw.update(client_kw)
        client = snmp.Client(**kw)
        try:
            return await coro_fn(client, agent)
        finally:
            client.close()
            await agent.stop()
            await asyncio.sleep(0)
    return asyncio.run(main())


# --------------------------------------------------------------------- client

def test_get_v2c_types_and_exceptions():
    async def go(c, a):
        oids = [SYS + ".1.0", SYS + ".3.0", "1.3.6.1.2.1.4.20.1.1.10.0.0.5", SYS + ".99.0",
                "1.3.6.1.2.1.43.10.2.1.4.1.1", ".1.3.6.1.4.1.1.64", SYS + ".2.0", "1.3.6.1.2.1.43.11.1.1.9.1.1"]
        r = await c.get("127.0.0.1", oids, port=a.port)
        return r, c.stats
    r, st = run(go)
    assert r[0] == (SYS + ".1.0", b"Fake printer")
    assert r[1] == (SYS + ".3.0", 12345)
    assert r[2] == ("1.3.6.1.2.1.4.20.1.1.10.0.0.5", "10.0.0.5")
    assert r[3][0] == SYS + ".99.0" and r[3][1] is ber.NO_SUCH_OBJECT
    assert r[4][1] == 123456 and r[5] == ("1.3.6.1.4.1.1.64", 2 ** 40)
    assert r[6][1] == "1.3.6.1.4.1.2435.2.3.9.1" and r[7][1] == -3
    assert st["sent"] == 1 and st["received"] == 1 and st["dropped"] == 0
    assert st["bytes_out"] > 0 and st["bytes_in"] > st["bytes_out"]


def test_get_v1_nosuchname_drops_varbind_and_retries():
    async def go(c, a):
        oids = [SYS + ".1.0", SYS + ".98.0", SYS + ".3.0", SYS + ".99.0"]
        r = await c.get("127.0.0.1", oids, community="public", version="1", port=a.port)
        return r, [len(q.varbinds) for q, k in a.requests], [q.version for q, k in a.requests]
    r, sizes, versions = run(go)
    assert r[0] == (SYS + ".1.0", b"Fake printer")
    assert r[1] == (SYS + ".98.0", ber.NO_SUCH_OBJECT)
    assert r[2] == (SYS + ".3.0", 12345)
    assert r[3] == (SYS + ".99.0", ber.NO_SUCH_OBJECT)
    assert sizes == [4, 3, 2] and versions == ["1", "1", "1"]


def test_get_v1_all_missing():
    async def go(c, a):
        return await c.get("127.0.0.1", ["1.3.6.1.9.1", "1.3.6.1.9.2"], version="1", port=a.port)
    assert run(go) == [("1.3.6.1.9.1", ber.NO_SUCH_OBJECT), ("1.3.6.1.9.2", ber.NO_SUCH_OBJECT)]


def test_get_toobig_splits_in_halves():
    oids = [SYS + ".1.0", SYS + ".2.0", SYS + ".3.0", SYS + ".5.0", "1.3.6.1.4.1.1.64"]

    async def go(c, a):
        a.max_varbinds = 2
        r = await c.get("127.0.0.1", oids, port=a.port)
        return r, [len(q.varbinds) for q, k in a.requests]
    r, sizes = run(go)
    assert [o for o, v in r] == oids
    assert r[3][1] == b"fb-test" and r[4][1] == 2 ** 40
    assert sizes == [5, 2, 3, 1, 2]  # 5 -> 2 + 3 -> 2 + (1 + 2)

    # a single varbind that is still too big is an error, not an endless split
    async def go3(c, a):
        a.answer = lambda req: ([(o, ber.encode_null()) for o, v in req.varbinds], 1, 0)
        try:
            await c.get("127.0.0.1", [SYS + ".1.0"], port=a.port)
        except snmp.SnmpError as e:
            return e
    e = run(go3)
    assert isinstance(e, snmp.SnmpError) and not isinstance(e, snmp.Timeout)
    assert e.name == "tooBig" and e.status == 1


def test_agent_error_raises_snmperror():
    async def go(c, a):
        a.answer = lambda req: ([(o, ber.encode_null()) for o, v in req.varbinds], 5, 1)
        try:
            await c.get("127.0.0.1", [SYS + ".1.0"], port=a.port)
        except snmp.SnmpError as e:
            return e
    e = run(go)
    assert e.name == "genErr" and e.status == 5 and e.index == 1 and "genErr" in str(e)


def test_wrong_varbind_count_raises_snmperror():
    async def go(c, a):
        a.answer = lambda req: ([], 0, 0)
        try:
            await c.get("127.0.0.1", [SYS + ".1.0"], port=a.port)
        except snmp.SnmpError as e:
            return e
    assert isinstance(run(go), snmp.SnmpError)


def test_getnext_and_getbulk():
    async def go(c, a):
        n = await c.getnext("127.0.0.1", [SYS, SYS + ".3.0", "1.3.6.1.4.1.1.64"], port=a.port)
        b = await c.getbulk("127.0.0.1", [SYS + ".1.0", "1.3.6.1.2.1.43.11.1.1.9"], 1, 3, port=a.port)
        n1 = await c.getnext("127.0.0.1", [SYS + ".5.0", "1.3.6.1.4.1.1.64"], version="1", port=a.port)
        return n, b, n1
    n, b, n1 = run(go)
    assert n[0] == (SYS + ".1.0", b"Fake printer")
    assert n[1] == (SYS + ".5.0", b"fb-test")
    assert n[2][1] is ber.END_OF_MIB_VIEW
    assert b == [(SYS + ".2.0", "1.3.6.1.4.1.2435.2.3.9.1"),
                 ("1.3.6.1.2.1.43.11.1.1.9.1.1", -3), ("1.3.6.1.2.1.43.11.1.1.9.1.2", 80),
                 ("1.3.6.1.2.1.43.11.1.1.9.1.3", 55)]
    assert n1[0][0] == "1.3.6.1.2.1.2.2.1.2.1" and n1[1] == ("1.3.6.1.4.1.1.64", ber.END_OF_MIB_VIEW)

    async def bulk_v1(c, a):
        try:
            await c.getbulk("127.0.0.1", [SYS], version="1", port=a.port)
        except ValueError:
            return True
    assert run(bulk_v1)


def test_walk_v2c_and_v1_agree():
    root = "1.3.6.1.2.1.43.11.1.1.9"
    expect = [(root + ".1.1", -3), (root + ".1.2", 80), (root + ".1.3", 55), (root + ".1.10", 40)]

    async def go(c, a):
        w2 = await c.walk("127.0.0.1", root, port=a.port, max_repetitions=3)
        w1 = await c.walk("127.0.0.1", root, version="1", port=a.port)
        ifs = await c.walk("127.0.0.1", "1.3.6.1.2.1.2.2.1.2", port=a.port)
        ifs1 = await c.walk("127.0.0.1", ".1.3.6.1.2.1.2.2.1.2", version="1", port=a.port)
        whole = await c.walk("127.0.0.1", "1.3.6", port=a.port, max_repetitions=7)
        tail = await c.walk("127.0.0.1", "1.3.6.1.4.1", port=a.port)
        tail1 = await c.walk("127.0.0.1", "1.3.6.1.4.1", version="1", port=a.port)
        none = await c.walk("127.0.0.1", "1.3.6.1.2.1.99", port=a.port)
        capped = await c.walk("127.0.0.1", "1.3.6.1.2.1.2.2.1.2", port=a.port, max_rows=25)
        pdus = [q.pdu_type for q, k in a.requests]
        return w2, w1, ifs, ifs1, whole, tail, tail1, none, capped, pdus
    w2, w1, ifs, ifs1, whole, tail, tail1, none, capped, pdus = run(go)
    assert w2 == expect and w1 == expect
    assert len(ifs) == 60 and ifs == ifs1 and ifs[59] == ("1.3.6.1.2.1.2.2.1.2.60", b"if59")
    assert [o for o, v in whole] == sorted(MIB, key=_oidkey)
    assert tail == [("1.3.6.1.4.1.1.64", 2 ** 40)] and tail1 == tail
    assert none == []
    assert len(capped) == 25 and capped == ifs[:25]
    assert ber.GETBULK in pdus and ber.GETNEXT in pdus


def test_walk_stops_on_non_increasing_oid():
    async def go(c, a):
        # a broken agent that always answers with the same row
        a.answer = lambda req: ([(SYS + ".5.0", ber.encode_int(1))]
                                * (req.error_index if req.pdu_type == ber.GETBULK else 1), 0, 0)
        w = await c.walk("127.0.0.1", SYS, port=a.port, max_repetitions=4)
        w1 = await c.walk("127.0.0.1", SYS, version="1", port=a.port)
        return w, w1, len(a.requests)
    w, w1, n = run(go)
    assert w == [(SYS + ".5.0", 1)] and w1 == [(SYS + ".5.0", 1)] and n == 3


def test_walk_halves_max_repetitions_after_timeout():
    async def go(c, a):
        a.drop_if = lambda req: req.pdu_type == ber.GETBULK and req.error_index > 4 and len(a.requests) > 1
        w = await c.walk("127.0.0.1", "1.3.6.1.2.1.2.2.1.2", port=a.port, max_repetitions=16)
        return w, [q.error_index for q, k in a.requests]
    w, reps = run(go, timeout_ms=40, retries=0)
    assert len(w) == 60
    assert reps[0] == 16 and 4 in reps and max(reps[reps.index(4):]) <= 4


def test_timeout_and_retries_with_backoff():
    async def go(c, a):
        a.drop = 1000
        t0 = fbport.ticks_ms()
        try:
            await c.get("127.0.0.1", [SYS + ".1.0"], port=a.port)
        except snmp.Timeout as e:
            return e, fbport.ticks_diff(fbport.ticks_ms(), t0), a.requests, c.stats
    e, ms, reqs, st = run(go, timeout_ms=40, retries=2)
    assert isinstance(e, snmp.SnmpError)
    assert len(reqs) == 3 and len(set(q.request_id for q, k in reqs)) == 1  # same id on retries
    assert ms >= 40 + 80 + 160 - 10, ms
    assert st["timeouts"] == 1 and st["retries"] == 2 and st["sent"] == 3


def test_retry_then_success():
    async def go(c, a):
        a.drop = 1
        r = await c.get("127.0.0.1", [SYS + ".5.0"], port=a.port)
        return r, c.stats, len(a.requests)
    r, st, n = run(go, timeout_ms=50, retries=1)
    assert r == [(SYS + ".5.0", b"fb-test")] and n == 2
    assert st["retries"] == 1 and st["timeouts"] == 0


def test_receiver_survives_running_out_of_memory():
    """A MemoryError while a reply is read or decoded loses that datagram only: the
    request is retried and the client keeps working (small heaps, docs/snmp-engine.md)."""
    real_recv, real_dispatch = fbport.recv_datagram, snmp.Client._dispatch
    fails = {"recv": 1, "dispatch": 1}

    def recv(sock, n):
        if fails["recv"]:
            fails["recv"] -= 1
            real_recv(sock, n)       # the datagram is consumed, then the heap "runs out"
            raise MemoryError("memory allocation failed")
        return real_recv(sock, n)

    def dispatch(self, data, addr):
        if fails["dispatch"]:
            fails["dispatch"] -= 1
            raise MemoryError("memory allocation failed")
        return real_dispatch(self, data, addr)

    async def go(c, a):
        first = await c.get("127.0.0.1", [SYS + ".5.0"], port=a.port)
        second = await c.get("127.0.0.1", [SYS + ".5.0"], port=a.port)
        return first, second, c.stats

    fbport.recv_datagram, snmp.Client._dispatch = recv, dispatch
    try:
        first, second, st = run(go, timeout_ms=50, retries=3)
    finally:
        fbport.recv_datagram, snmp.Client._dispatch = real_recv, real_dispatch
    assert first == second == [(SYS + ".5.0", b"fb-test")]
    assert st["no_memory"] == 2 and st["retries"] == 2


def test_request_ids_stay_in_two_octets_and_skip_those_in_flight():
    c = snmp.Client()
    try:
        c._next_id = snmp.ID_MAX - 1
        c._pending[snmp.ID_MAX] = object()      # in flight: skipped
        got = [c._new_id() for _ in range(3)]
        assert got == [snmp.ID_MAX - 1, snmp.ID_MIN, snmp.ID_MIN + 1]
        msg = snmp.encode_request("2c", b"public", ber.GET, snmp.ID_MAX, ["1.3.6.1.2.1.1.5.0"])
        assert snmp.decode_response(msg).request_id == snmp.ID_MAX and msg[15:19] == b"\x02\x02\x7f\xff"
        low = snmp.encode_request("2c", b"public", ber.GET, snmp.ID_MIN, ["1.3.6.1.2.1.1.5.0"])
        assert len(low) == len(msg) and low[15:19] == b"\x02\x02\x00\x80"   # never one octet
        for _ in range(200):
            assert snmp.ID_MIN <= snmp._seed_id() <= snmp.ID_MAX
    finally:
        c._pending.clear()
        c.close()


def test_wrong_community_is_not_answered():
    async def go(c, a):
        try:
            await c.get("127.0.0.1", [SYS + ".5.0"], community=b"private", port=a.port)
        except snmp.Timeout:
            return True
    assert run(go, timeout_ms=30, retries=0)


def _forged(kind):
    def forge(agent, req, reply, addr):
        if kind == "port":
            agent.other.sendto(reply, addr)
        elif kind == "address":
            agent.elsewhere.sendto(reply, addr)
        elif kind == "id":
            agent.sock.sendto(snmp.encode_message(req.version, req.community, ber.RESPONSE,
                                                  (req.request_id + 1) & 0x7FFFFFFF,
                                                  [(SYS + ".5.0", ber.encode_octets(b"evil"))]), addr)
        elif kind == "community":
            agent.sock.sendto(snmp.encode_message(req.version, b"other", ber.RESPONSE, req.request_id,
                                                  [(SYS + ".5.0", ber.encode_octets(b"evil"))]), addr)
        elif kind == "version":
            agent.sock.sendto(snmp.encode_message("1" if req.version == "2c" else "2c", req.community,
                                                  ber.RESPONSE, req.request_id,
                                                  [(SYS + ".5.0", ber.encode_octets(b"evil"))]), addr)
        elif kind == "pdu":
            agent.sock.sendto(snmp.encode_message(req.version, req.community, ber.GET, req.request_id,
                                                  [(SYS + ".5.0", ber.encode_octets(b"evil"))]), addr)
        elif kind == "garbage":
            agent.sock.sendto(b"\x30\x84\xff\xff\xff\xff garbage", addr)
            agent.sock.sendto(reply[:-3], addr)
    return forge


def _get_with_forged_reply(kind):
    async def go(c, a):
        a.forge = _forged(kind)
        a.hold = 20  # the real reply comes after the forged one
        r = await c.get("127.0.0.1", [SYS + ".5.0"], port=a.port)
        await asyncio.sleep(0.02)
        return r, c.stats
    return run(go)


def test_forged_replies_are_dropped_and_counted():
    for kind in ("port", "address", "id", "community", "version", "pdu", "garbage"):
        r, st = _get_with_forged_reply(kind)
        assert r == [(SYS + ".5.0", b"fb-test")], kind
        assert st["dropped"] >= 1, (kind, st)
        if kind == "garbage":
            assert st["malformed"] == 2


def test_any_port_opt_in_accepts_same_host_other_port_only():
    async def go(c, a):
        a.reply_from = "other"              # replies leave from a high port (Canon's 47545 agent)
        got = await c.get("127.0.0.1", [SYS + ".5.0"], port=a.port, any_port=True)
        nxt = await c.getnext("127.0.0.1", [SYS + ".5"], port=a.port, any_port=True)
        bulk = await c.getbulk("127.0.0.1", [SYS + ".5"], 0, 1, port=a.port, any_port=True)
        out = [got, nxt, bulk]
        def wrong_community(agent, req, reply, addr):
            agent.other.sendto(snmp.encode_message(req.version, b"other", ber.RESPONSE, req.request_id,
                                                   [(SYS + ".5.0", ber.encode_octets(b"evil"))]), addr)
        for sock, forge, kw in (("other", None, {}),                          # not marked: strict
                                ("elsewhere", None, {"any_port": True}),      # another host
                                ("elsewhere", wrong_community, {"any_port": True})):
            a.reply_from, a.forge = sock, forge
            try:
                await c.get("127.0.0.1", [SYS + ".5.0"], port=a.port, **kw)
                out.append("answered")
            except snmp.Timeout:
                out.append("timeout")
        return out, c.stats
    out, st = run(go, timeout_ms=60, retries=0)
    assert out[0] == [(SYS + ".5.0", b"fb-test")]
    assert out[1] == [(SYS + ".5.0", b"fb-test")] and out[2] == [(SYS + ".5.0", b"fb-test")]
    assert out[3:] == ["timeout", "timeout", "timeout"], out
    assert st["dropped"] >= 3


def test_late_duplicate_reply_is_dropped():
    async def go(c, a):
        def dup(agent, req, reply, addr):
            agent.sock.sendto(reply, addr)
        a.forge = dup
        r1 = await c.get("127.0.0.1", [SYS + ".5.0"], port=a.port)
        rx = c._rx
        await asyncio.sleep(0.02)
        r2 = await c.get("127.0.0.1", [SYS + ".1.0"], port=a.port)
        await asyncio.sleep(0.02)
        assert c._rx is rx and not rx.done()  # one receiver task, still running
        return r1, r2, c.stats, [q.request_id for q, k in a.requests]
    r1, r2, st, ids = run(go)
    assert r1 == [(SYS + ".5.0", b"fb-test")] and r2 == [(SYS + ".1.0", b"Fake printer")]
    assert st["dropped"] >= 1
    assert ids[1] == (ids[0] + 1) & 0x7FFFFFFF and 0 <= ids[0] < 2 ** 31


def test_many_concurrent_requests_one_socket_window():
    names = ["1.3.6.1.2.1.2.2.1.2.%d" % (i + 1) for i in range(60)]

    async def go(c, a):
        a.hold = 5  # replies held briefly and sent back in reverse order
        tasks = [c.get("127.0.0.1", [names[i % 60]], port=a.port) for i in range(200)]
        res = await asyncio.gather(*tasks)
        return res, a.max_held, set(k for q, k in a.requests), c.stats, c._inflight
    res, max_held, sources, st, inflight = run(go, window=16, timeout_ms=2000)
    for i, r in enumerate(res):
        assert r == [(names[i % 60], b"if%d" % (i % 60))], i
    assert max_held <= 16 and max_held >= 2
    assert len(sources) == 1  # one socket for everything
    assert st["sent"] == 200 and st["received"] == 200 and st["timeouts"] == 0 and inflight == 0


def test_recv_datagram_keeps_datagram_boundaries():
    # Several datagrams queued at once (valid, garbage, long-form length, empty, too
    # big): each read returns exactly one of them, with its sender.
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _attempt in range(100):
        p = 20000 + (random.getrandbits(16) % 40000)
        try:
            rx.bind(_addr(p))
            break
        except OSError:
            continue
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    big = snmp.encode_message("2c", b"public", ber.RESPONSE, 5,
                              [("1.3.6.1.2.1.1.1.0", ber.encode_octets(b"x" * 300))])
    sent = [(tx, RESP), (tx2, b"garbage!"), (tx, big), (tx2, RESP + b"trailing"),
            (tx, b"\x30\x80\x00\x00"), (tx, b"\x30\x05ab"), (tx, big)]
    try:
        for s, d in sent:
            s.sendto(d, _addr(p))
        time.sleep(0.05)
        got = []
        for i in range(len(sent)):
            data, addr = fbport.recv_datagram(rx, 200 if i == len(sent) - 1 else 1000)
            got.append((bytes(data), fbport.addr_key(addr)))
        raises(OSError, fbport.recv_datagram, rx, 1000)
    finally:
        rx.close()
        tx.close()
        tx2.close()
    assert got[0][0] == RESP and got[2][0] == big
    assert got[0][1] == got[2][1] and got[1][1] != got[0][1] and got[3][1] == got[1][1]
    for i in (1, 3, 4, 5):  # garbage, trailing octets, indefinite length, short
        raises(BERError, snmp.decode_response, got[i][0])
    assert len(got[6][0]) == 200  # truncated to maxsize
    raises(BERError, snmp.decode_response, got[6][0])


def test_walk_each_streams_rows():
    async def go(c, a):
        rows = []
        n = await c.walk_each("127.0.0.1", "1.3.6.1.2.1.2.2.1.2", lambda o, v: rows.append((o, v)),
                              port=a.port, max_repetitions=7)
        m = await c.walk_each("127.0.0.1", "1.3.6.1.2.1.2.2.1.2", lambda o, v: None,
                              version="1", port=a.port, max_rows=5)
        return n, m, rows
    n, m, rows = run(go)
    assert n == 60 and m == 5 and len(rows) == 60 and rows[0] == ("1.3.6.1.2.1.2.2.1.2.1", b"if0")


def test_client_survives_several_event_loops_and_close():
    c = snmp.Client(timeout_ms=300)

    async def once():
        a = Agent(MIB)
        a.start()
        try:
            return await c.get("127.0.0.1", [SYS + ".5.0"], port=a.port)
        finally:
            await a.stop()
    assert asyncio.run(once()) == [(SYS + ".5.0", b"fb-test")]
    assert asyncio.run(once()) == [(SYS + ".5.0", b"fb-test")]
    c.close()
    assert asyncio.run(once()) == [(SYS + ".5.0", b"fb-test")]
    c.close()
    c.close()


def test_walk_adapts_max_repetitions_on_toobig():
    async def go(c, a):
        a.max_bulk = 6
        rows = await c.walk("127.0.0.1", "1.3.6.1.2.1.2.2.1.2", port=a.port, max_repetitions=40)
        bulks = [q.error_index for q, k in a.requests if q.pdu_type == ber.GETBULK]
        a.max_bulk = 0
        capped = await c.walk("127.0.0.1", "1.3.6.1.2.1.2.2.1.2", port=a.port, max_repetitions=40,
                              max_rows=25)
        last = a.requests[-1][0].error_index
        return rows, bulks, capped, last
    rows, bulks, capped, last = run(go)
    assert len(rows) == 60 and rows[-1] == ("1.3.6.1.2.1.2.2.1.2.60", b"if59")
    assert bulks[:4] == [40, 20, 10, 5] and set(bulks[4:]) == {5}
    assert len(capped) == 25 and last == 25  # never asks for more rows than max_rows allows

    async def one_row(c, a):  # tooBig even for one row: the error surfaces
        a.max_bulk = 0.5
        try:
            await c.walk("127.0.0.1", SYS, port=a.port, max_repetitions=4)
        except snmp.SnmpError as e:
            return e.name, [q.error_index for q, k in a.requests]
    assert run(one_row) == ("tooBig", [4, 2, 1])


def test_a_reply_over_the_receive_buffer_asks_for_fewer_rows():
    # 40 rows of ~620 octets: 32 or 16 of them do not fit the client's 8 KB buffer
    col = "1.3.6.1.2.1.43.11.1.1.6.1."
    mib = {col + str(i): ber.encode_octets(b"%03d" % i + b"d" * 600) for i in range(1, 41)}

    async def go(c, a):
        with LogCapture(fbport.WARN) as log:
            rows = await c.walk("127.0.0.1", col[:-3], port=a.port, max_repetitions=32)
        return rows, [q.error_index for q, k in a.requests if q.pdu_type == ber.GETBULK], log.text(), c.stats
    rows, bulks, log, stats = run(go, mib, bufsize=8192)
    assert [v[:3] for _, v in rows] == [b"%03d" % i for i in range(1, 41)], rows[-1]
    assert bulks[:3] == [32, 16, 8] and set(bulks[3:]) == {8}, bulks
    assert stats["truncated"] == 2 and stats["timeouts"] == 0 and stats["retries"] == 0, stats
    assert log.count("reply from 127.0.0.1 over 8192 bytes: asking for less") == 2, log


def test_a_cut_reply_for_no_request_of_its_sender_is_dropped():
    big = snmp.encode_message("2c", b"public", ber.RESPONSE, 4242,
                              [("1.3.6.1.2.1.1.1.0", ber.encode_octets(b"x" * 900))])
    assert snmp.cut_head(big[:300]) == ("2c", b"public", 4242)
    assert snmp.cut_head(big[:12]) is None and snmp.cut_head(b"\x30\x82") is None

    async def go(c, a):
        c._socket()
        c._too_big(big[:300], ("127.0.0.1", a.port))     # nothing asked with id 4242
        return c.stats["dropped"]
    assert run(go) == 1


def test_rate_limit_spaces_requests():
    async def go(c, a):
        t0 = fbport.ticks_ms()
        await asyncio.gather(*[c.get("127.0.0.1", [SYS + ".5.0"], port=a.port) for _ in range(8)])
        return fbport.ticks_diff(fbport.ticks_ms(), t0), c.stats
    elapsed, st = run(go, rate=40, burst=2, timeout_ms=2000)
    # 2 at once, then one per 25 ms: the last of 8 leaves no earlier than 150 ms in
    assert elapsed >= 140 and st["sent"] == 8 and st["timeouts"] == 0


def test_walk_grows_max_repetitions_within_reply_budget():
    async def go(c, a):
        root = "1.3.6.1.2.1.2.2.1.2"
        rows = await c.walk("127.0.0.1", root, port=a.port, max_repetitions=4)
        grown = [q.error_index for q, k in a.requests]
        del a.requests[:]
        await c.walk("127.0.0.1", root, port=a.port, max_repetitions=4, reply_budget=0)
        fixed = [q.error_index for q, k in a.requests]
        del a.requests[:]
        await c.walk("127.0.0.1", root, port=a.port, max_repetitions=4, reply_budget=300)
        small = [q.error_index for q, k in a.requests]
        return rows, grown, fixed, small
    rows, grown, fixed, small = run(go)
    assert len(rows) == 60
    assert grown[:3] == [4, 8, 16] and max(grown) <= 64 and len(grown) <= 6
    assert fixed == [4] * 16
    # rows of ~20 octets: a 300-octet budget holds about 12 of them, never more than 15
    assert small[:3] == [4, 8, 12] or small[:3] == [4, 8, 13], small
    assert max(small) <= 15


def _forget_modules(names):
    """Unload fleetbox.<name> for each name (sys.modules and the package attribute) and
    return what was loaded, for _restore_modules."""
    import sys
    import fleetbox
    saved = {}
    for n in names:
        m = sys.modules.pop("fleetbox." + n, None)
        if m is not None:
            saved[n] = m
        if n in fleetbox.__dict__:
            delattr(fleetbox, n)
    return saved


def _restore_modules(names, saved):
    import sys
    import fleetbox
    for n in names:
        sys.modules.pop("fleetbox." + n, None)
        if n in fleetbox.__dict__:
            delattr(fleetbox, n)
        if n in saved:
            sys.modules["fleetbox." + n] = saved[n]
            setattr(fleetbox, n, saved[n])


def test_v2c_client_never_imports_the_v3_half():
    """usm and snmpv3 are a v3 site's heap: a v1/v2c client must not load them, and the
    first v3 request loads both."""
    import sys
    names = ("usm", "snmpv3")
    saved = _forget_modules(names)
    try:
        async def go(c, a):
            r = await c.get("127.0.0.1", [SYS + ".1.0"], port=a.port)
            await c.walk("127.0.0.1", SYS, port=a.port, version="1")
            loaded_v2c = [n for n in names if "fleetbox." + n in sys.modules]
            silent = Agent({})  # bound, never started: it answers nothing
            try:
                await c.get("127.0.0.1", [SYS + ".1.0"], port=silent.port,
                            cred=snmp.Credential.v3(b"u", "SHA", b"authpass1"))
            except snmp.Timeout:
                pass
            finally:
                await silent.stop()
            return r, loaded_v2c, [n for n in names if "fleetbox." + n in sys.modules]
        r, loaded_v2c, loaded_v3 = run(go, timeout_ms=20, retries=0)
        assert r[0] == (SYS + ".1.0", b"Fake printer")
        assert loaded_v2c == [], loaded_v2c
        assert loaded_v3 == list(names), loaded_v3
    finally:
        _restore_modules(names, saved)


def test_walking_code_is_loaded_on_the_first_walk_only():
    import sys
    names = ("snmpwalk",)
    saved = _forget_modules(names)
    try:
        async def go(c, a):
            await c.get("127.0.0.1", [SYS + ".1.0"], port=a.port)
            after_get = "fleetbox.snmpwalk" in sys.modules
            rows = await c.walk("127.0.0.1", SYS, port=a.port)
            return after_get, rows, "fleetbox.snmpwalk" in sys.modules
        after_get, rows, after_walk = run(go)
        assert not after_get and after_walk
        assert rows and rows[0][0] == SYS + ".1.0"
    finally:
        _restore_modules(names, saved)


def test_snmp_reexports_the_message_names_it_always_had():
    from fleetbox import snmpmsg
    for name in ("Credential", "SnmpError", "Timeout", "Response", "decode_response",
                 "encode_message", "encode_request", "encode_pdu", "decode_pdu",
                 "message_version", "error_name", "discovery_request", "TOO_BIG",
                 "NO_SUCH_NAME", "ERROR_NAMES", "MAX_MSG"):
        assert getattr(snmp, name) is getattr(snmpmsg, name), name
    assert snmp.ID_MAX == 0x7FFF
