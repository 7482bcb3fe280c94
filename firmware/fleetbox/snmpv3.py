"""The SNMPv3 half of fleetbox.snmp's Client: engine discovery and its cache, securing
requests and checking replies (RFC 3414). fleetbox.snmp imports it, and with it
fleetbox.usm, on first SNMPv3 use, so a v1/v2c-only site never pays their heap.
"""
from fleetbox import port as _port
from fleetbox import usm
from fleetbox.usm import decode_message  # noqa: F401 (the Client's v3 datagram decoder)
from fleetbox.ber import BERError, RESPONSE, REPORT
from fleetbox.snmpmsg import SnmpError, Response, encode_pdu, decode_pdu, discovery_request


# msgMaxSize of every request: the largest UDP payload over IPv4, not the receive buffer. Agents
# answer a reply over msgMaxSize each their own way (pysnmp drops it: a timeout; net-snmp 5.9
# answers genErr); an oversized reply read cut short is the one signal they all give, and the
# client takes it as tooBig, as it does for v1/v2c (docs/snmp-engine.md).
MSG_MAX_SIZE = 65507


def cut_reply(client, data):
    """The v3 request in flight that a reply cut short by the receive buffer answers, or None:
    its msgID, user, engine and security level must be the request's (the MAC, over the whole
    message, cannot be checked: a forger with the msgID could only make the request ask for fewer rows)."""
    head = usm.cut_head(data)
    if head is None:
        return None
    msg_id, flags, engine_id, user = head
    p = client._pending.get(msg_id)
    if p is None or p.version != "3" or p.discovery or p.engine is None:
        return None
    if engine_id != p.engine.engine_id or user != p.cred.user.name or (flags & 3) != p.cred.user.flags:
        return None
    return p


def open_reply(client, p, m):
    """Check the security of an SNMPv3 reply to pending request p and decode it: a
    Response (with .usm = the message) or None when it must be dropped (RFC 3414 3.2)."""
    user = p.cred.user
    st = client.stats
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


async def discover(client, host, port, addr, cred):
    """Learn the agent's engine ID, boots and time from its unknownEngineIDs report
    (RFC 3414 4) and remember them, dropping the oldest engine past MAX_ENGINES."""
    client.stats["discoveries"] += 1

    def build(rid):
        return discovery_request(rid, MSG_MAX_SIZE)
    r = await client._exchange(host, port, addr, cred, build, discovery=True)
    m = r.usm
    eng = usm.Engine(m.engine_id, m.boots, m.time)
    engines = client._engines
    key = _port.addr_key(addr)
    if len(engines) >= client.MAX_ENGINES and key not in engines:
        engines.pop(next(iter(engines)))
    engines[key] = eng
    return eng


async def request(client, host, port, addr, cred, pdu_type, oids, nr, mr):
    """One SNMPv3 request: discovers the engine when unknown, resynchronises on a
    notInTimeWindow report and rediscovers on unknownEngineID (at most 4 rounds);
    any other report is the agent refusing the user, raised as SnmpError."""
    user = cred.user
    key = _port.addr_key(addr)
    eng = client._engines.get(key)
    for _ in range(4):
        if eng is None:
            eng = await discover(client, host, port, addr, cred)

        def build(rid, eng=eng):
            boots, t = eng.now()
            scoped = usm.encode_scoped(eng.engine_id, cred.context,
                                       encode_pdu(pdu_type, rid, oids, nr, mr))
            return usm.encode_message(rid, MSG_MAX_SIZE, user, eng.engine_id, boots, t,
                                      scoped, client._new_salt() if user.priv else None)
        r = await client._exchange(host, port, addr, cred, build, eng)
        if r.pdu_type != REPORT:
            return r
        oid = r.varbinds[0][0] if r.varbinds else ""
        name = usm.REPORT_NAMES.get(oid, "report " + oid)
        m = r.usm
        if oid == usm.NOT_IN_TIME_WINDOW and m.flags & usm.FLAG_AUTH:
            eng.set_time(m.boots, m.time)
            continue
        if oid == usm.UNKNOWN_ENGINE_ID:
            client._engines.pop(key, None)
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
