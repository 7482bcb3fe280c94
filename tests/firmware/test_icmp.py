"""fleetbox.icmp: echo packets, reply matching, and a real ping of the loopback (both runtimes)."""
import asyncio

from fleetbox import icmp


def test_checksum_rfc1071_example_and_a_packet_that_sums_to_zero():
    # RFC 1071 section 3: the one's complement sum of 0001 f203 f4f5 f6f7 is ddf2
    assert icmp.checksum(bytes([0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7])) == 0xFFFF - 0xDDF2
    req = icmp.echo_request(0x1234, 7)
    assert req[0] == 8 and req[1] == 0 and req[4:8] == b"\x12\x34\x00\x07" and req[8:] == b"fleetbox"
    assert icmp.checksum(req) == 0
    assert icmp.checksum(icmp.echo_request(1, 2, b"odd")) == 0


def reply_to(req):
    r = bytearray(req)
    r[0] = 0
    r[2] = r[3] = 0
    c = icmp.checksum(r)
    r[2], r[3] = c >> 8, c & 0xFF
    return bytes(r)


def test_replies_matched_by_sequence_and_on_raw_sockets_by_identifier():
    req = icmp.echo_request(0x0102, 9)
    rep = reply_to(req)
    ip = bytes([0x45]) + bytes(19)            # a 20-octet IPv4 header as a raw socket delivers it
    assert icmp.is_reply(rep, 0x0102, 9, False)
    assert icmp.is_reply(rep, 0x7777, 9, False)           # ping socket: the kernel picks the identifier
    assert icmp.is_reply(ip + rep, 0x0102, 9, True)
    assert not icmp.is_reply(ip + rep, 0x7777, 9, True)   # another process's echo on a raw socket
    assert not icmp.is_reply(rep, 0x0102, 10, False)
    assert not icmp.is_reply(req, 0x0102, 9, False)       # our own request looped back
    bad = bytearray(rep)
    bad[9] ^= 1
    assert not icmp.is_reply(bytes(bad), 0x0102, 9, False)
    assert not icmp.is_reply(rep[:6], 0x0102, 9, False) and not icmp.is_reply(b"", 1, 1, True)


class Silent:
    """A socket to an absent address: the request goes out, nothing comes back."""

    def __init__(self):
        self.sent = []

    def sendto(self, data, addr):
        self.sent.append(data)

    def recvfrom(self, n):
        raise OSError(11)

    def close(self):
        pass


def test_an_address_that_never_answers_is_false_after_the_timeout():
    s = Silent()
    assert asyncio.run(icmp.ping("127.0.0.1", 60, s, False)) is False
    assert len(s.sent) == 1 and s.sent[0][0] == 8


def test_loopback_answers_ping_where_the_platform_allows_icmp():
    sock, raw = icmp.open_socket()
    got = asyncio.run(icmp.ping("127.0.0.1", 2000))
    if sock is None:
        assert got is None          # neither a ping socket nor a raw socket: "cannot tell"
    else:
        sock.close()
        assert got is True
