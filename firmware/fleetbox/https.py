"""A small HTTPS client for the uplink: TLS with CA verification and SPKI pinning, never plain HTTP."""
import hashlib
import socket

from fleetbox import port


class HttpError(Exception):
    pass


class PinError(HttpError):
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


def request(method, url, body=b"", ca_der=None, pins=(), resolve=None, timeout_s=15, headers=None):
    """One HTTPS request; returns (status, body bytes). Raises HttpError/OSError on failure.

    `resolve` overrides DNS for the URL's host (like curl --resolve); `pins` are
    SPKI SHA-256 digests of which the server's leaf key must match one, when given.
    """
    if ca_der is None:
        raise HttpError("no CA configured: refusing an unverified connection")
    host, p, path = split_url(url)
    addr = socket.getaddrinfo(resolve or host, p)[0][-1]
    sock = socket.socket()
    sock.settimeout(timeout_s)
    try:
        sock.connect(addr)
        s, leaf = port.tls_wrap(sock, host, ca_der)
    except Exception:
        sock.close()
        raise
    try:
        if pins:
            if leaf is None or spki_sha256(leaf) not in pins:
                raise PinError("server key of %s matches no pin" % host)
        head = "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n" % (
            method, path, host, len(body))
        for k, v in (headers or {}).items():
            head += "%s: %s\r\n" % (k, v)
        s.write(head.encode() + b"\r\n")
        if body:
            s.write(body)
        return _read_response(s)
    finally:
        s.close()


def _read_response(s):
    if not hasattr(s, "readline"):
        s = s.makefile("rb")
    status_line = s.readline()
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise HttpError("bad HTTP status line %r" % status_line[:40])
    status = int(parts[1])
    length = None
    while True:
        line = s.readline()
        if not line or line in (b"\r\n", b"\n"):
            break
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    if length is None:
        body = s.read()
    else:
        if length > 65536:
            raise HttpError("response too large (%d bytes)" % length)
        body = b""
        while len(body) < length:
            chunk = s.read(length - len(body))
            if not chunk:
                break
            body += chunk
    return status, body
