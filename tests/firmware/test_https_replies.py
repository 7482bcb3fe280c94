"""fleetbox.https reading hostile answers: bounded head, strict Content-Length (issue 14).

Runs under pytest on CPython and under tests/mprun.py on MicroPython (where a 300 KB header line
read by asyncio's readline raised MemoryError past the uplink)."""
import asyncio
import io

from check import raises
from fleetbox import https


class Drip:
    """An asyncio-like stream over bytes handing out at most `step` bytes per read."""

    def __init__(self, data, step=7):
        self.data, self.pos, self.step, self.reads = data, 0, step, 0

    async def read(self, n):
        self.reads += 1
        b = self.data[self.pos:self.pos + min(n, self.step)]
        self.pos += len(b)
        return b

    async def readexactly(self, n):
        out = b""
        while len(out) < n:
            b = await self.read(n - len(out))
            if not b:
                raise EOFError
            out += b
        return out


def both(data):
    """(status, body, keep) or the HttpError, from the blocking and the asyncio reader alike."""
    results = []
    for reader in ("sync", "async"):
        try:
            if reader == "sync":
                results.append(https._read_response(io.BytesIO(data)))
            else:
                results.append(asyncio.run(https._aread_response(Drip(data))))
        except https.HttpError as e:
            results.append(e)
    a, b = results
    assert type(a) is type(b), results
    return a


def test_a_plain_answer_and_keep_alive():
    assert both(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello") == (200, b"hello", True)
    assert both(b"HTTP/1.1 409 Conflict\r\ncontent-length:2\r\nConnection: close\r\n\r\nno") == (409, b"no", False)
    assert both(b"HTTP/1.0 200 OK\r\n\r\nuntil eof") == (200, b"until eof", False)
    assert both(b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n") == (204, b"", True)


def test_huge_header_line_is_refused_without_buffering_it():
    line = b"X-Junk: " + b"a" * (300 * 1024) + b"\r\n"
    data = b"HTTP/1.1 200 OK\r\n" + line + b"Content-Length: 0\r\n\r\n"
    assert isinstance(both(data), https.HttpError)
    d = Drip(data, step=4096)
    raises(https.HttpError, asyncio.run, https._aread_response(d))
    assert d.pos <= https.MAX_HEAD + 4         # it stopped reading at the bound
    line = data = None


def test_endless_or_too_many_headers_are_refused():
    many = b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * (https.MAX_HEADERS + 1) + b"Content-Length: 0\r\n\r\n"
    assert isinstance(both(many), https.HttpError)
    endless = b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 2000      # never ends, then the peer stops
    assert isinstance(both(endless), https.HttpError)


def test_bad_content_lengths_are_refused():
    for v in (b"-5", b"+5", b"5 5", b"0x10", b"", b"99999999999999999999", b"65537", b"1e3"):
        data = b"HTTP/1.1 200 OK\r\nContent-Length: " + v + b"\r\n\r\n" + b"x" * 10
        assert isinstance(both(data), https.HttpError), v
    two = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"
    assert isinstance(both(two), https.HttpError)
    same = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
    assert both(same) == (200, b"abc", True)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert isinstance(both(chunked), https.HttpError)


def test_bad_status_lines_and_short_bodies_are_refused():
    for data in (b"HTTP/1.1 2000 OK\r\n\r\n", b"HTTP/2 200\r\n\r\n", b"SSH-2.0-x\r\n\r\n", b"\r\n\r\n",
                 b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", b"HTTP/1.1 200 OK\r\nContent-Len"):
        assert isinstance(both(data), https.HttpError), data


def test_bytes_past_the_body_are_refused_on_the_asyncio_path():
    # They would be read as the next answer on a kept-alive connection.
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"
    raises(https.HttpError, asyncio.run, https._aread_response(Drip(data, step=64)))
