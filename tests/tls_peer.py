"""TLS peers for the box's TLS-policy tests: a server whose certificate has chosen validity
dates (as a box with no clock, or a clock a year off, sees the real one), and a listener
that records the ClientHello the box offers. Loopback only; each stops with its owner."""
import datetime
import ipaddress
import os
import socket
import ssl
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from simulator import pki

# IANA cipher suite values the box may offer: ECDHE with an AEAD (TLS 1.2), TLS 1.3's own suites
# (all AEAD, key exchange always ephemeral), and the renegotiation-info signalling value.
AEAD_ECDHE = {0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256", 0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384",
              0xC02F: "ECDHE-RSA-AES128-GCM-SHA256", 0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
              0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305", 0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305",
              0xC0AC: "ECDHE-ECDSA-AES128-CCM", 0xC0AD: "ECDHE-ECDSA-AES256-CCM",
              0x1301: "TLS13-AES128-GCM-SHA256", 0x1302: "TLS13-AES256-GCM-SHA384",
              0x1303: "TLS13-CHACHA20-POLY1305-SHA256", 0x1304: "TLS13-AES128-CCM-SHA256"}
SIGNALLING = {0x00FF}


def server_cert(directory, stem, hostname, address, ca, not_before, not_after):
    """(cert path, key path) of a server certificate signed by ca=(key, cert) valid from
    not_before to not_after (datetimes, UTC)."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, hostname)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname),
                                                        x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, stem + ".pem"), os.path.join(directory, stem + ".key")
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def days_from_now(days):
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)


class _Listener:
    def __init__(self, address):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 0))
        self.sock.listen(8)
        self.address, self.port = self.sock.getsockname()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(10)
            try:
                self.serve(conn)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def stop(self):
        self.stopping = True
        try:
            socket.create_connection((self.address, self.port), timeout=1).close()
        except OSError:
            pass
        self.sock.close()
        self.thread.join(10)


class NoContentServer(_Listener):
    """HTTPS on loopback answering every request 204; .served counts the answered requests."""

    def __init__(self, address, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.served = 0
        super().__init__(address)

    def serve(self, conn):
        s = self.ctx.wrap_socket(conn, server_side=True)
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            b = s.recv(1)
            if not b:
                return
            head += b
        s.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        self.served += 1
        s.close()


class HelloRecorder(_Listener):
    """A TCP listener that keeps the first TLS handshake record a client sends, then hangs up."""

    def __init__(self, address):
        self.hellos = []
        super().__init__(address)

    def serve(self, conn):
        data = b""
        while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        self.hellos.append(data)


def client_hello_suites(record):
    """The cipher suite values of a ClientHello in one TLS record (RFC 8446 4.1.2 / RFC 5246 7.4.1.2)."""
    if record[0] != 0x16 or record[5] != 0x01:
        raise ValueError("not a ClientHello record")
    p = 5 + 4 + 2 + 32                   # record header, handshake header, legacy_version, random
    p += 1 + record[p]                   # session id
    n = int.from_bytes(record[p:p + 2], "big")
    p += 2
    if n % 2 or p + n > len(record):
        raise ValueError("bad cipher suite list")
    return [int.from_bytes(record[i:i + 2], "big") for i in range(p, p + n, 2)]


def ca(directory):
    return pki.ensure_ca(directory)
