"""Walking an SNMP subtree with fleetbox.snmp's Client, one page after another.
Loaded on a Client's first walk: a site that only GETs never pays its heap.
"""
from fleetbox.ber import is_exception
from fleetbox.oid import oid_startswith, oid_arcs
from fleetbox.snmpmsg import SnmpError, Timeout, TOO_BIG


async def walk_each(client, host, root, fn, cred, port, max_rows, max_repetitions,
                    reply_budget):
    """Call fn(oid, value) for each row strictly under root (a normalized OID), without
    keeping the rows; return how many there were. GETNEXT on v1. GETBULK on v2c/v3: it
    starts at max_repetitions and, while pages come back full, grows (at most
    doubling) to as many rows as the rows seen so far fit in reply_budget octets
    (1400: one Ethernet frame, no IP fragments; 0 = never grow); it halves on
    tooBig, and after a timeout once the agent has answered, and then grows no
    more. Stops at the end of the subtree, endOfMibView, a non-increasing OID or
    max_rows."""
    last = oid_arcs(root)
    cur = root
    count = 0
    v1 = cred.version == "1"
    mr = max(1, max_repetitions)
    answered = False
    while count < max_rows:
        try:
            if v1:
                vbs = await client.getnext(host, [cur], port=port, cred=cred)
            else:
                asked = min(mr, max_rows - count)
                r = await client._bulk(host, [cur], 0, asked, port, cred)
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
