"""The appliance's DHCP client codec (board/qemu-x86_64/dhcp.py) against the simulator's server."""
import importlib.util
import os

import pytest

from simulator import dhcp as server_mod
from simulator.runner import ROOT

spec = importlib.util.spec_from_file_location("qemu_dhcp", os.path.join(ROOT, "board", "qemu-x86_64", "dhcp.py"))
client = importlib.util.module_from_spec(spec)
spec.loader.exec_module(client)

MAC = bytes.fromhex("525400fb0001")
OTHER_MAC = bytes.fromhex("525400fb0002")
POOL = ["192.0.2.200", "192.0.2.201"]


def _server():
    return server_mod.Server("br0", "192.0.2.1", "192.0.2.0/24", POOL, router="192.0.2.1",
                             dns=["192.0.2.1", "192.0.2.53"], lease_s=600)


def _exchange(srv, mac=MAC, xid=0x1234):
    offer = client.parse(srv.handle(bytes(client.build(client.DISCOVER, xid, mac))), xid, mac)
    kind, yiaddr, opts = offer
    assert kind == client.OFFER
    ack = client.parse(srv.handle(bytes(client.build(client.REQUEST, xid, mac, requested=yiaddr,
                                                     server=opts[client.OPT_SERVER]))), xid, mac)
    return offer, ack


def test_discover_offer_request_ack_gives_address_mask_router_dns_and_lease():
    srv = _server()
    (_, offered, _), (kind, yiaddr, opts) = _exchange(srv)
    assert kind == client.ACK and yiaddr == offered == bytes([192, 0, 2, 200])
    lease = client.Client._lease_from(None, yiaddr, opts)
    assert client.ip_text(lease["mask"]) == "255.255.255.0"
    assert client.ip_text(lease["router"]) == "192.0.2.1"
    assert [client.ip_text(d) for d in lease["dns"]] == ["192.0.2.1", "192.0.2.53"]
    assert (lease["lease_s"], lease["t1_s"], lease["t2_s"]) == (600, 300, 525)
    assert srv.address_of("52:54:00:fb:00:01") == "192.0.2.200"


def test_each_box_keeps_its_own_address_and_renewal_is_acknowledged():
    srv = _server()
    _, (_, first, _) = _exchange(srv)
    _, (_, second, _) = _exchange(srv, OTHER_MAC, 0x99)
    assert first != second
    renew = client.build(client.REQUEST, 0x77, MAC, ciaddr=first)     # RENEWING: no server id, ciaddr set
    kind, yiaddr, _ = client.parse(srv.handle(bytes(renew)), 0x77, MAC)
    assert (kind, yiaddr) == (client.ACK, first)


def test_a_request_for_someone_elses_address_is_refused():
    srv = _server()
    _, (_, first, _) = _exchange(srv)
    req = client.build(client.REQUEST, 5, OTHER_MAC, requested=first, server=bytes([192, 0, 2, 1]))
    kind, _, _ = client.parse(srv.handle(bytes(req)), 5, OTHER_MAC)
    assert kind == client.NAK


def test_the_pool_runs_dry_quietly():
    srv = _server()
    _exchange(srv)
    _exchange(srv, OTHER_MAC, 2)
    assert srv.handle(bytes(client.build(client.DISCOVER, 3, bytes.fromhex("525400fb0003")))) is None


def test_the_client_ignores_replies_that_are_not_for_it_or_malformed():
    srv = _server()
    reply = srv.handle(bytes(client.build(client.DISCOVER, 0x42, MAC)))
    assert client.parse(reply, 0x43, MAC) is None              # another transaction
    assert client.parse(reply, 0x42, OTHER_MAC) is None        # another box
    assert client.parse(reply[:241], 0x42, MAC) is None        # no message type left
    bad = bytearray(reply)
    bad[241] = 200                                             # first option runs past the end
    assert client.parse(bytes(bad), 0x42, MAC) is None


@pytest.mark.parametrize("junk", [b"", b"\x01" * 10, b"\x02\x01\x06" + b"\0" * 300])
def test_the_server_rejects_what_is_not_a_dhcp_request(junk):
    with pytest.raises(ValueError):
        _server().handle(junk)
