"""Factory identity (docs/provisioning.md): per box a P-256 key and a certificate from the
factory CA, a random claim code for its label, and the cloud's manufacturing manifest entry.

The manifest holds only public material (certificate, SPKI digest) and a salted hash of the
claim code: a leaked manifest lets nobody claim or impersonate a box. No secret is shared
between two boxes.
"""
import base64
import datetime
import hashlib
import json
import os
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .errors import FatalError

# Claim codes: 16 characters of an alphabet without look-alikes (0/O, 1/I/L), 80 bits.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LEN = 16
CERT_DAYS = 20 * 365


def claim_code():
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LEN))


def normalize_code(code):
    """What the dealer typed, as the label prints it: case, spaces and dashes do not matter."""
    return "".join(c for c in code.upper() if c.isalnum())


def code_hash(serial, code, salt):
    """The manifest's claim-code hash (docs/provisioning.md section 2)."""
    return hashlib.pbkdf2_hmac("sha256", normalize_code(code).encode(), salt + serial.encode(), 100000).hex()


def _write_private(path, data):
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.chmod(path + ".tmp", 0o600)
    os.replace(path + ".tmp", path)


def ensure_factory_ca(directory):
    """(key, cert) of the factory CA that signs box certificates, created on first use."""
    os.makedirs(directory, exist_ok=True)
    key_path, cert_path = os.path.join(directory, "factory-ca.key"), os.path.join(directory, "factory-ca.pem")
    if os.path.exists(cert_path):
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        with open(cert_path, "rb") as f:
            return key, x509.load_pem_x509_certificate(f.read())
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleetbox factory"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "fleetbox factory CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS + 365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def box_certificate(serial, ca):
    """(private key, certificate) of one box: CN = serial, client authentication only."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleetbox"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, serial)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def spki_digest(cert):
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def parse_endpoint(spec):
    """NAME=URL[@ADDRESS] -> {"name", "url"[, "resolve"]}: where the box provisions."""
    name, eq, rest = spec.partition("=")
    url, _, resolve = rest.partition("@")
    if not eq or not name or not url.startswith("https://"):
        raise FatalError("--endpoint wants NAME=https://HOST[:PORT]/v1/provision[@ADDRESS], got %r" % spec)
    ep = {"name": name, "url": url}
    if resolve:
        ep["resolve"] = resolve
    return ep


def make(serial, factory_ca, server_ca_der, pins, endpoints):
    """(identity dict for the box's identity partition, manifest entry for the cloud, claim code)."""
    if not serial or len(serial) > 32 or not all(c.isalnum() or c in "-_." for c in serial):
        raise FatalError("serial %r: 1..32 characters of letters, digits, - _ ." % serial)
    for p in pins:
        if len(p) != 64 or any(c not in "0123456789abcdef" for c in p.lower()):
            raise FatalError("pin %r is not a hex SHA-256 SPKI digest (64 hex digits)" % p)
    key, cert = box_certificate(serial, factory_ca)
    code = claim_code()
    salt = secrets.token_bytes(16)
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    identity = {
        "serial": serial,
        "cert": base64.b64encode(cert_der).decode(),
        "key": base64.b64encode(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption())).decode(),
        "provision": endpoints,
        "ca": base64.b64encode(server_ca_der).decode(),
        "pins": [p.lower() for p in pins],
    }
    entry = {"cert": base64.b64encode(cert_der).decode(), "spki": spki_digest(cert),
             "claim_salt": salt.hex(), "claim_hash": code_hash(serial, code, salt)}
    return identity, entry, code


def add_to_manifest(path, serial, entry):
    """The manufacturing manifest: {"boxes": {serial: entry}}; written 0600, atomically."""
    manifest = {"boxes": {}}
    if os.path.exists(path):
        with open(path) as f:
            try:
                manifest = json.load(f)
            except ValueError as e:
                raise FatalError("%s is not a manifest: %s" % (path, e), hint="fix or move it")
        manifest.setdefault("boxes", {})
    manifest["boxes"][serial] = entry
    _write_private(path, json.dumps(manifest, indent=1))


def write_identity(path, identity):
    _write_private(path, json.dumps(identity))


def write_label(path, serial, code):
    """The label's text; the claim code is a secret until the box is claimed (0600)."""
    grouped = "-".join(code[i:i + 4] for i in range(0, len(code), 4))
    _write_private(path, "serial %s\nclaim code %s\n" % (serial, grouped))
