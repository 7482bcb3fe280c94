"""A pysnmp command responder (GET/GETNEXT/GETBULK) for interop tests and benchmarks.

Usage: python tests/pysnmp_v3_agent.py HOST PORT [HOST2 ...]
Serves pysnmp's own SNMPv2-MIB (sysDescr etc.) to v1/v2c community "public" and to one
SNMPv3 user per auth x priv combination (USERS below), in the default context and in
context "MFP". Prints "ready" once listening; stops on SIGTERM.
"""
import sys

from pyasn1.type import univ
from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import cmdrsp, context

AUTH = {"MD5": config.USM_AUTH_HMAC96_MD5, "SHA": config.USM_AUTH_HMAC96_SHA,
        "SHA224": config.USM_AUTH_HMAC128_SHA224, "SHA256": config.USM_AUTH_HMAC192_SHA256,
        "SHA384": config.USM_AUTH_HMAC256_SHA384, "SHA512": config.USM_AUTH_HMAC384_SHA512}
# net-snmp's AES-192/256 key extension is pysnmp's "Blumenthal"; Cisco's is pysnmp's plain Aes192/256
PRIV = {"AES": config.USM_PRIV_CFB128_AES,
        "AES192": config.USM_PRIV_CFB192_AES_BLUMENTHAL, "AES256": config.USM_PRIV_CFB256_AES_BLUMENTHAL,
        "AES192C": config.USM_PRIV_CFB192_AES, "AES256C": config.USM_PRIV_CFB256_AES}
ENGINE_ID = bytes.fromhex("80001f8880fb1e7b0c0ffee000000001")


def users():
    """(user name, auth, auth pass, priv, priv pass) for every combination."""
    out = [("noauth", None, None, None, None)]
    for a in AUTH:
        out.append(("%s-none" % a.lower(), a, "auth-%s-pass" % a.lower(), None, None))
        for p in PRIV:
            out.append(("%s-%s" % (a.lower(), p.lower()), a, "auth-%s-pass" % a.lower(),
                        p, "priv-%s-pass" % p.lower()))
    return out


USERS = users()


def add_user(eng, name, auth, auth_pass, priv, priv_pass, contexts):
    """One USM user (auth/priv None: without) that may read everything in `contexts`."""
    args = [a for a in (auth, auth_pass, priv, priv_pass) if a is not None]
    config.add_v3_user(eng, name, *args)
    level = "authPriv" if priv else ("authNoPriv" if auth else "noAuthNoPriv")
    for c in contexts:
        config.add_vacm_user(eng, 3, name, level, (1, 3, 6), contextName=c)


def main():
    hosts = sys.argv[1:-1] if len(sys.argv) > 3 else [sys.argv[1]]
    port = int(sys.argv[-1])
    eng = engine.SnmpEngine(snmpEngineID=univ.OctetString(hexValue=ENGINE_ID.hex()))
    for i, h in enumerate(hosts):
        config.add_transport(eng, udp.DOMAIN_NAME + (i + 1,),
                             udp.UdpTransport().open_server_mode((h, port)))
    config.add_v1_system(eng, "area", "public")
    config.add_vacm_user(eng, 1, "area", "noAuthNoPriv", (1, 3, 6))
    config.add_vacm_user(eng, 2, "area", "noAuthNoPriv", (1, 3, 6))
    for name, a, ap, p, pp in USERS:
        add_user(eng, name, a and AUTH[a], ap, p and PRIV[p], pp, (b"", b"MFP"))
    # a device left on DES: the client must say so, not just time out
    add_user(eng, "sha-des", AUTH["SHA"], "auth-sha-pass", config.USM_PRIV_CBC56_DES, "priv-des-pass", (b"",))
    ctx = context.SnmpContext(eng)
    ctx.register_context_name(b"MFP", ctx.get_mib_instrum(b""))
    cmdrsp.GetCommandResponder(eng, ctx)
    cmdrsp.NextCommandResponder(eng, ctx)
    cmdrsp.BulkCommandResponder(eng, ctx)
    eng.transport_dispatcher.job_started(1)
    print("ready", flush=True)
    try:
        eng.open_dispatcher()
    finally:
        eng.close_dispatcher()


if __name__ == "__main__":
    main()
