"""A minimal synchronous SNMP v1/v2c GET client: for tests and for the site's own
readiness check, which must not depend on the collector under test."""
from __future__ import annotations

import random
import socket
import time
from typing import Any

from simulator.site.errors import SiteError
from simulator.site.mib import OID_SYS_DESCR, parse_oid


def encode_get(version: str, community: str, reqid: int, oids) -> bytes:
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import api

    p = api.PROTOCOL_MODULES[api.SNMP_VERSION_1 if version == "1" else api.SNMP_VERSION_2C]
    pdu = p.GetRequestPDU()
    p.apiPDU.set_defaults(pdu)
    p.apiPDU.set_request_id(pdu, reqid)
    p.apiPDU.set_varbinds(pdu, [(parse_oid(o), p.Null("")) for o in oids])
    msg = p.Message()
    p.apiMessage.set_defaults(msg)
    p.apiMessage.set_community(msg, community)
    p.apiMessage.set_pdu(msg, pdu)
    return encoder.encode(msg)


def decode_response(data: bytes):
    """(request id, error-status, [(oid text, pysnmp value)]) of a response message."""
    from pyasn1.codec.ber import decoder
    from pysnmp.proto import api

    ver = int(api.decodeMessageVersion(data))
    p = api.PROTOCOL_MODULES[ver]
    msg, _ = decoder.decode(data, asn1Spec=p.Message())
    pdu = p.apiMessage.get_pdu(msg)
    return (int(p.apiPDU.get_request_id(pdu)), int(p.apiPDU.get_error_status(pdu)),
            [(str(o), v) for o, v in p.apiPDU.get_varbinds(pdu)])


def snmp_get(address: str, port: int = 161, community: str = "public",
             oids=(OID_SYS_DESCR,), version: str = "2c", timeout: float = 2.0,
             retries: int = 1) -> list[tuple[str, Any]]:
    """Synchronous SNMP v1/v2c GET. Returns [(oid, pysnmp value)]; raises TimeoutError,
    or SiteError on an error-status."""
    reqid = random.randint(1, 2**31 - 1)
    data = encode_get(version, community, reqid, oids)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(retries + 1):
            s.sendto(data, (address, port))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    resp, _ = s.recvfrom(65535)
                except socket.timeout:
                    break
                try:
                    rid, err, vbs = decode_response(resp)
                except Exception:
                    continue
                if rid != reqid:
                    continue
                if err:
                    raise SiteError(f"{address}:{port} answered error-status {err}")
                return vbs
    raise TimeoutError(f"no SNMP answer from {address}:{port}")


def wait_ready(devices: list, timeout: float, alive=lambda: True) -> list:
    """GET sysDescr from every device until all answer; returns those that did not."""
    pending = {d.name: d for d in devices}
    ids: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        while pending and time.monotonic() < deadline:
            for d in pending.values():
                rid = random.randint(1, 2**31 - 1)
                ids[rid] = d.name
                try:
                    s.sendto(encode_get("2c", d.community, rid, [OID_SYS_DESCR]), d.endpoint)
                except OSError:
                    pass
            round_end = min(deadline, time.monotonic() + 0.3)
            while pending and (left := round_end - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    resp, _ = s.recvfrom(65535)
                except socket.timeout:
                    break
                except OSError:     # ICMP port unreachable surfaces here on Linux
                    continue
                try:
                    rid, err, _ = decode_response(resp)
                except Exception:
                    continue
                name = ids.get(rid)
                if name in pending and not err:
                    del pending[name]
            if not alive():
                break
    return list(pending.values())
