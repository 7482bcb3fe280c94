"""A small HTTPS client for the uplink: TLS with CA verification and SPKI pinning, never plain HTTP,
kept-alive connections, and tunnelling through an HTTP proxy (CONNECT, optional basic auth)."""
import binascii
import hashlib
import socket

from fleetbox import port
from fleetbox.errors import FleetboxError

_EINPROGRESS = 115


class HttpError(FleetboxError):
    pass


class PinError(HttpError):
    pass


class ProxyError(HttpError):
    pass


def _der_header(buf, pos):
    """(tag, content start, content length) of the DER element at pos."""
    tag = buf[pos]
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if not 0 < k <= 4 or pos + k > len(buf):
            raise HttpError("bad certificate encoding")
        n = 0
        for i in range(k):
            n = (n << 8) | buf[pos + i]
        pos += k
    if pos + n > len(buf):
        raise HttpError("truncated certificate")
    return tag, pos, n


def spki_sha256(cert_der):
    """SHA-256 of the certificate's SubjectPublicKeyInfo (the RFC 7469 pin)."""
    _, p, _ = _der_header(cert_der, 0)          # Certificate
    _, p, _ = _der_header(cert_der, p)          # TBSCertificate
    tag, start, n = _der_header(cert_der, p)
    if tag == 0xA0:                             # [0] version
        p = start + n
    for _ in range(5):                          # serial, signature, issuer, validity, subject
        _, start, n = _der_header(cert_der, p)
        p = start + n
    tag, start, n = _der_header(cert_der, p)
    if tag != 0x30:
        raise HttpError("certificate has no SubjectPublicKeyInfo")
    return hashlib.sha256(cert_der[p:start + n]).digest()


def split_url(url):
    if not url.startswith("https://"):
        raise HttpError("only https:// URLs are allowed: %r" % url)
    rest = url[8:]
    hostport, _, path = rest.partition("/")
    host, _, p = hostport.partition(":")
    return host, int(p) if p else 443, "/" + path


def split_proxy(proxy):
    """(host, port, Proxy-Authorization value or None) of {"url": "http://h:p", "user", "password"}."""
    url = proxy["url"]
    if not url.startswith("http://"):
        raise HttpError("proxy url must be http://host:port (the tunnel inside carries TLS): %r" % url)
    host, _, p = url[7:].rstrip("/").partition(":")
    auth = None
    if proxy.get("user") is not None:
        cred = ("%s:%s" % (proxy["user"], proxy.get("password", ""))).encode()
        auth = "Basic " + binascii.b2a_base64(cred).decode().strip()
    return host, int(p) if p else 3128, auth


class Connection:
    """One kept-alive HTTPS connection to one endpoint (HTTP/1.1), opened on first use.

    Every request after the first rides the same TLS session, so a drain of many
    uploads pays for one handshake. A connection the server closed in between
    fails the next request with OSError/HttpError: the caller retries on a fresh one
    (uploads are idempotent by upload id). `proxy`: {"url": "http://h:p", "user",
    "password"}: the connection is tunnelled with CONNECT (RFC 9110 9.3.6).
    """

    def __init__(self, url, ca_der, pins=(), resolve=None, proxy=None, timeout_s=15, client=None):
        self.client = client    # (certificate DER, key DER) shown when the server asks: provisioning
        if ca_der is None:
            raise HttpError("no CA configured: refusing an unverified connection")
        self.host, self.port, self.path = split_url(url)
        if not pins or any(len(p) != 32 for p in pins):
            raise PinError("pins must be one or more SPKI SHA-256 digests (32 bytes): the pin is what is trusted")
        self.ca, self.pins, self.resolve = ca_der, pins, resolve
        self.proxy = proxy
        self.timeout_s = timeout_s
        self.sock = self.stream = None
        self.requests = 0   # on the current TLS session

    @property
    def open(self):
        return self.stream is not None

    def connect(self):
        if self.proxy:
            phost, pport, auth = split_proxy(self.proxy)
            addr = socket.getaddrinfo(phost, pport)[0][-1]
        else:
            addr = socket.getaddrinfo(self.resolve or self.host, self.port)[0][-1]
        sock = socket.socket()
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(addr)
            if self.proxy:
                _tunnel(sock, self.resolve or self.host, self.port, self.host, auth)
            s, leaf = port.tls_wrap(sock, self.host, self.ca, self.client)
        except Exception:
            sock.close()
            raise
        if leaf is None or spki_sha256(leaf) not in self.pins:
            s.close()
            raise PinError("server key of %s matches no pin" % self.host)
        self.sock = s
        self.stream = s if hasattr(s, "readline") else s.makefile("rb")
        self.requests = 0

    def _head(self, method, length, headers, path):
        head = "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n" % (method, path or self.path, self.host, length)
        for k, v in (headers or {}).items():
            head += "%s: %s\r\n" % (k, v)
        return head.encode() + b"\r\n"

    def request(self, method, body=b"", headers=None, path=None):
        """(status, body bytes) of one request on the kept-alive connection."""
        if self.stream is None:
            self.connect()
        head = self._head(method, len(body), headers, path)
        try:
            # One write, so head and body travel in one TLS record.
            self.sock.write(head + body)
            status, reply, keep = _read_response(self.stream)
        except Exception:
            self.close()
            raise
        self.requests += 1
        if not keep:
            self.close()
        return status, reply

    def request_head(self, method, headers=None, path=None):
        """(status, Content-Length or None, keep-alive?) of a bodiless request, its response head only:
        the caller reads the body off .stream into a buffer of its own (a download in constant memory)."""
        if self.stream is None:
            self.connect()
        try:
            self.sock.write(self._head(method, 0, headers, path))
            return _parse_head(_read_head(self.stream))
        except Exception:
            self.close()
            raise

    # -- the same over non-blocking sockets driven by asyncio (port.ASYNC_TLS: MicroPython)
    async def arequest(self, method, body=b"", headers=None, path=None):
        """request(), but the loop runs while the network is slow; every step times out."""
        if not port.ASYNC_TLS:
            return self.request(method, body, headers, path)
        import asyncio
        ms = self.timeout_s * 1000
        if self.stream is None:
            try:
                await asyncio.wait_for_ms(self._aconnect(), ms)
            except asyncio.TimeoutError:
                raise HttpError("no TLS connection to %s within %d s" % (self.host, self.timeout_s))
        head = self._head(method, len(body), headers, path)
        try:
            self.stream.write(head + body)
            await asyncio.wait_for_ms(self.stream.drain(), ms)
            status, reply, keep = await asyncio.wait_for_ms(_aread_response(self.stream), ms)
        except (EOFError, asyncio.TimeoutError) as e:
            self.close()
            raise HttpError("no complete answer from %s (%s)" % (self.host, type(e).__name__))
        except BaseException:
            self.close()
            raise
        self.requests += 1
        if not keep:
            self.close()
        return status, reply

    async def _aconnect(self):
        import asyncio
        if self.proxy:
            phost, pport, auth = split_proxy(self.proxy)
            addr = socket.getaddrinfo(phost, pport)[0][-1]
        else:
            addr = socket.getaddrinfo(self.resolve or self.host, self.port)[0][-1]
        sock = socket.socket()
        sock.setblocking(False)
        try:
            try:
                sock.connect(addr)
            except OSError as e:
                if e.args[0] != _EINPROGRESS:
                    raise
            await port.wait_io(sock, True)
            if self.proxy:
                await _atunnel(sock, self.resolve or self.host, self.port, self.host, auth)
            s, leaf = await port.tls_handshake(sock, self.host, self.ca, self.client)
        except BaseException:
            sock.close()
            raise
        if spki_sha256(leaf) not in self.pins:
            s.close()
            raise PinError("server key of %s matches no pin" % self.host)
        self.sock = s
        self.stream = asyncio.StreamReader(s)
        self.requests = 0

    def close(self):
        s, self.sock, self.stream = self.sock, None, None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass


def _tunnel(sock, host, p, hostname, auth):
    """CONNECT through an HTTP proxy; the socket then carries the TLS session to host:p."""
    head = "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n" % (host, p, hostname, p)
    if auth:
        head += "Proxy-Authorization: %s\r\n" % auth
    data = (head + "\r\n").encode()
    while data:
        data = data[sock.send(data):]
    reply = b""
    while not reply.endswith(b"\r\n\r\n"):
        c = sock.recv(1)     # byte by byte: not one byte of the TLS stream may be read here
        if not c:
            raise HttpError("proxy closed the connection during CONNECT")
        reply += c
        if len(reply) > 4096:
            raise HttpError("proxy reply too long")
    _check_connect_reply(reply)


async def _atunnel(sock, host, p, hostname, auth):
    """_tunnel() on a non-blocking socket."""
    head = "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n" % (host, p, hostname, p)
    if auth:
        head += "Proxy-Authorization: %s\r\n" % auth
    data = (head + "\r\n").encode()
    while data:
        await port.wait_io(sock, True)
        data = data[sock.send(data):]
    reply = b""
    while not reply.endswith(b"\r\n\r\n"):
        await port.wait_io(sock)
        c = sock.recv(1)     # byte by byte: not one byte of the TLS stream may be read here
        if not c:
            raise HttpError("proxy closed the connection during CONNECT")
        reply += c
        if len(reply) > 4096:
            raise HttpError("proxy reply too long")
    _check_connect_reply(reply)


def _check_connect_reply(reply):
    parts = reply.split(None, 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise HttpError("bad proxy reply %r" % reply[:40])
    if parts[1] != b"200":
        raise ProxyError("proxy refused CONNECT: %s" % reply.split(b"\r\n", 1)[0].decode())


def request(method, url, body=b"", ca_der=None, pins=(), resolve=None, timeout_s=15, headers=None, proxy=None):
    """One HTTPS request on its own connection; returns (status, body bytes).

    `resolve` overrides DNS for the URL's host (like curl --resolve); `pins` are
    SPKI SHA-256 digests of which the server's leaf key must match one, when given.
    """
    c = Connection(url, ca_der, pins, resolve, proxy, timeout_s)
    try:
        return c.request(method, body, dict(headers or {}, Connection="close"))
    finally:
        c.close()


MAX_LINE = 1024        # a longer status or header line is refused, never buffered
MAX_HEADERS = 32       # header lines of one response
MAX_HEAD = 4096        # all of the response head
MAX_BODY = 65536


async def _aread_response(stream):
    """_read_response() over an asyncio stream, reading the head in bounded chunks (MicroPython's
    readline would buffer a line of any length)."""
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        sep = 4
        if end < 0:
            end = buf.find(b"\n\n")
            sep = 2
        if end >= 0:
            break
        if len(buf) >= MAX_HEAD:
            raise HttpError("response head longer than %d bytes" % MAX_HEAD)
        chunk = await stream.read(MAX_HEAD + 4 - len(buf))
        if not chunk:
            raise HttpError("connection closed inside the response head")
        buf += chunk
    rest = buf[end + sep:]
    lines = buf[:end].split(b"\n")
    buf = None
    for line in lines:
        if len(line) > MAX_LINE:
            raise HttpError("response header line longer than %d bytes" % MAX_LINE)
    status, length, keep = _parse_head(lines)
    if length is None:
        keep = False
        body = rest
        while len(body) <= MAX_BODY:
            chunk = await stream.read(MAX_BODY + 1 - len(body))
            if not chunk:
                break
            body += chunk
    else:
        if len(rest) > length:
            raise HttpError("%d bytes after the response body" % (len(rest) - length))
        body = rest
        if length > len(rest):
            try:
                body = rest + await stream.readexactly(length - len(rest))
            except EOFError:
                raise HttpError("connection closed inside the response body")
    if len(body) > MAX_BODY:
        raise HttpError("response too large")
    return status, body, keep


def _read_head(s):
    """The lines of a response head off a blocking stream, each read with a bound."""
    lines = []
    while True:
        line = s.readline(MAX_LINE + 1)
        if not line:
            raise HttpError("connection closed inside the response head")
        if len(line) > MAX_LINE:
            raise HttpError("response header line longer than %d bytes" % MAX_LINE)
        if line in (b"\r\n", b"\n"):
            return lines
        lines.append(line)
        if len(lines) > MAX_HEADERS + 1:
            raise HttpError("more than %d response header lines" % MAX_HEADERS)


def _read_response(s):
    """(status, body, keep-alive?) of one HTTP/1.1 response with a Content-Length."""
    status, length, keep = _parse_head(_read_head(s))
    if length is None:
        keep = False
        body = s.read(MAX_BODY + 1)
    else:
        body = b""
        while len(body) < length:
            chunk = s.read(length - len(body))
            if not chunk:
                raise HttpError("connection closed inside the response body")
            body += chunk
    if len(body) > MAX_BODY:
        raise HttpError("response too large")
    return status, body, keep


def _parse_head(lines):
    """(status, Content-Length or None, keep-alive?) from the head's lines (status line first).

    Anything that could leave a kept-alive connection out of step is refused: a Content-Length
    that is not one plain decimal (negative, signed, repeated with another value) and any
    Transfer-Encoding (never sent by the cloud)."""
    if not lines:
        raise HttpError("empty response head")
    if len(lines) > MAX_HEADERS + 1:
        raise HttpError("more than %d response header lines" % MAX_HEADERS)
    status_line = lines[0]
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
        raise HttpError("bad HTTP status line %r" % status_line[:40])
    status = int(parts[1])
    keep = parts[0] == b"HTTP/1.1"
    length = None
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        v = v.strip()
        if k == b"content-length":
            if not v.isdigit() or len(v) > 9:
                raise HttpError("bad Content-Length %r" % v[:20])
            n = int(v)
            if length is not None and n != length:
                raise HttpError("conflicting Content-Length headers")
            length = n
        elif k == b"transfer-encoding":
            raise HttpError("Transfer-Encoding %r not supported" % v[:20])
        elif k == b"connection" and v.lower() == b"close":
            keep = False
    if status in (204, 304) or 100 <= status < 200:
        length = 0                  # RFC 9112 6.3: no body, whatever the headers say
    if length is not None and length > MAX_BODY:
        raise HttpError("response too large (%d bytes)" % length)
    return status, length, keep
