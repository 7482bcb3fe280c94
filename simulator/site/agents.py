"""The pysnmp agents of the dynamic devices: one SnmpEngine per device, all in one
asyncio loop in one background thread, serving each device's live MIB and obeying its
injected faults (down, unreachable, slow, lossy) at the transport."""
from __future__ import annotations

import asyncio
import bisect
import functools
import random
import socket
import threading

from simulator.site.errors import bind_error


def _make_instrum(live):
    from pysnmp.proto import rfc1902, rfc1905
    from pysnmp.smi.instrum import AbstractMibInstrumController

    class LiveMibInstrum(AbstractMibInstrumController):
        """Sorted OID -> value store computed live from the device state."""

        def read_variables(self, *varBinds, **context):
            mib, _ = live.snapshot()
            out = []
            for name, _ in varBinds:
                oid = tuple(name)
                v = mib.get(oid)
                if v is None:
                    v = rfc1905.noSuchInstance if any(
                        k[:len(oid) - 1] == oid[:-1] for k in mib) else rfc1905.noSuchObject
                out.append((rfc1902.ObjectName(oid), v))
            return out

        def read_next_variables(self, *varBinds, **context):
            mib, keys = live.snapshot()
            out = []
            for name, _ in varBinds:
                oid = tuple(name)
                i = bisect.bisect_right(keys, oid)
                if i < len(keys):
                    out.append((rfc1902.ObjectName(keys[i]), mib[keys[i]]))
                else:
                    out.append((rfc1902.ObjectName(oid), rfc1905.endOfMibView))
            return out

        def write_variables(self, *varBinds, **context):
            from pysnmp.smi import error as smi_error
            raise smi_error.NotWritableError(idx=0)

    return LiveMibInstrum()


@functools.lru_cache(maxsize=None)
def _bulk_responder_class():
    from pysnmp.entity.rfc3413 import cmdrsp
    from pysnmp.proto.api import v2c
    from pysnmp.smi import error as smi_error

    class BulkResponder(cmdrsp.BulkCommandResponder):
        """GETBULK that stops repeating once a whole repetition is past the end of the MIB."""

        def handle_management_operation(self, snmpEngine, stateReference, contextName, PDU):
            non_rep = max(0, int(v2c.apiBulkPDU.get_non_repeaters(PDU)))
            max_rep = max(0, int(v2c.apiBulkPDU.get_max_repetitions(PDU)))
            req = v2c.apiPDU.get_varbinds(PDU)
            N = min(non_rep, len(req))
            R = max(len(req) - N, 0)
            M = min(max_rep, self.max_varbinds // R) if R else 0
            fun = self.snmpContext.get_mib_instrum(contextName).read_next_variables
            ctx = dict(snmpEngine=snmpEngine, acFun=self.verify_access, cbCtx=self.cbCtx)
            rsp = list(fun(*req[:N], **ctx)) if N else []
            vbs = req[-R:] if R else []
            while M and R:
                row = fun(*vbs, **ctx)
                rsp.extend(row)
                vbs = row
                M -= 1
                if all(v.tagSet == v2c.EndOfMibView.tagSet for _, v in row):
                    break
            if rsp:
                self.send_varbinds(snmpEngine, stateReference, 0, 0, rsp)
                self.release_state_information(stateReference)
            else:
                raise smi_error.SmiError()

    return BulkResponder


@functools.lru_cache(maxsize=None)
def _transport_class():
    from pysnmp.carrier.asyncio.dgram import udp

    class FaultyUdpTransport(udp.UdpAsyncioTransport):
        """UDP transport that obeys the device's injected faults."""

        fb_live = None

        def datagram_received(self, datagram, transportAddress):
            live = self.fb_live
            if live is not None:
                if live.down or live.unreachable:
                    return
                if live.loss and random.random() < live.loss:
                    return
                if live.delay > 0:
                    self.loop.call_later(live.delay, udp.UdpAsyncioTransport.datagram_received,
                                         self, datagram, transportAddress)
                    return
            udp.UdpAsyncioTransport.datagram_received(self, datagram, transportAddress)

    return FaultyUdpTransport


_V3_AUTH = {"none": "USM_AUTH_NONE", "md5": "USM_AUTH_HMAC96_MD5", "sha": "USM_AUTH_HMAC96_SHA",
            "sha224": "USM_AUTH_HMAC128_SHA224", "sha256": "USM_AUTH_HMAC192_SHA256",
            "sha384": "USM_AUTH_HMAC256_SHA384", "sha512": "USM_AUTH_HMAC384_SHA512"}
_V3_PRIV = {"none": "USM_PRIV_NONE", "des": "USM_PRIV_CBC56_DES", "3des": "USM_PRIV_CBC168_3DES",
            "aes": "USM_PRIV_CFB128_AES", "aes128": "USM_PRIV_CFB128_AES",
            "aes192": "USM_PRIV_CFB192_AES_BLUMENTHAL", "aes256": "USM_PRIV_CFB256_AES_BLUMENTHAL",
            "aes192c": "USM_PRIV_CFB192_AES", "aes256c": "USM_PRIV_CFB256_AES"}


class Agents:
    """All dynamic agents: one SnmpEngine per device, in one asyncio loop in one thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="fleetbox-site-agents", daemon=True)
        self.engines: list = []
        self.started = False

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self):
        self.thread.start()
        self.started = True

    def add(self, device):
        """Bind the device's socket here (clear errors), then build its engine in the loop."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(device.endpoint)
        except OSError as exc:
            sock.close()
            raise bind_error(device, exc) from None
        sock.setblocking(False)
        fut = asyncio.run_coroutine_threadsafe(self._setup(device, sock), self.loop)
        try:
            self.engines.append(fut.result(30))
        except Exception:
            sock.close()
            raise

    async def _setup(self, device, sock: socket.socket):
        from pysnmp.carrier.asyncio.dgram import udp
        from pysnmp.entity import config, engine
        from pysnmp.entity.rfc3413 import cmdrsp, context

        live = device.live
        # auto engine ID: a custom one makes pysnmp persist engine boots under /tmp/__pysnmp
        eng = engine.SnmpEngine()
        transport = _transport_class()(loop=asyncio.get_running_loop())
        transport.fb_live = live
        transport.open_server_mode(sock=sock)
        config.add_transport(eng, udp.DOMAIN_NAME, transport)
        config.add_v1_system(eng, "fleetbox-area", device.community)
        if live.v3:
            v3 = live.v3
            auth = getattr(config, _V3_AUTH[str(v3.get("auth", "none")).lower()])
            priv = getattr(config, _V3_PRIV[str(v3.get("priv", "none")).lower()])
            config.add_v3_user(eng, str(v3["user"]), auth, v3.get("auth_key"), priv, v3.get("priv_key"))
        ctx = context.SnmpContext(eng)
        ctx.unregister_context_name(b"")
        ctx.register_context_name(b"", _make_instrum(live))
        cmdrsp.GetCommandResponder(eng, ctx)
        cmdrsp.NextCommandResponder(eng, ctx)
        _bulk_responder_class()(eng, ctx)
        return eng

    def stop(self):
        if not self.started:
            return
        self.started = False

        async def close_all():
            for eng in self.engines:
                try:
                    eng.close_dispatcher()
                except Exception:
                    pass

        if self.thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(5)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        if not self.thread.is_alive():
            try:
                self.loop.close()
            except Exception:
                pass
        self.engines = []
