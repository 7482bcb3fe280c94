"""Signing keys: RSA (3072/4096 bits, e = 65537) for RSASSA-PSS with SHA-256 (docs/update-image.md).

A key's id is the SHA-256 of its SubjectPublicKeyInfo DER; private keys are PEM files
readable by their owner only and never leave the signing machine.
"""
import hashlib
import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .errors import FatalError

SALT_LEN = 32
BITS = (3072, 4096)
PASSPHRASE_ENV = "FBTOOL_KEY_PASSPHRASE"


class SigningError(FatalError):
    """A refusal of keys, root metadata or update images; reason is the same short code
    the box reports (fleetbox.updimage). Exit status 3 tells a refusal from a usage error."""

    exit_code = 3

    def __init__(self, message, reason="invalid"):
        FatalError.__init__(self, message)
        self.reason = reason

    def line(self):
        return FatalError.line(self) + " [%s]" % self.reason


def pss():
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=SALT_LEN)


def spki_der(public_key):
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(public_key):
    """32 bytes: SHA-256 of the SubjectPublicKeyInfo DER."""
    return hashlib.sha256(spki_der(public_key)).digest()


def _check(public_key, path):
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SigningError("%s: not an RSA key" % path)
    nums = public_key.public_numbers()
    if public_key.key_size not in BITS or nums.e != 65537:
        raise SigningError("%s: RSA-%d e=%d (want 3072 or 4096 bits, e=65537)" % (path, public_key.key_size, nums.e))


def generate(path, bits=3072):
    """Write a new private key (PEM, mode 0600) to path and its public key to
    path's .pub.pem twin; returns (key id, public path)."""
    if bits not in BITS:
        raise SigningError("key size %d: want 3072 or 4096" % bits)
    if os.path.exists(path):
        raise SigningError("%s exists: not overwriting a key" % path)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    phrase = os.environ.get(PASSPHRASE_ENV)
    enc = (serialization.BestAvailableEncryption(phrase.encode()) if phrase
           else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = public_path(path)
    with open(pub, "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_id(key.public_key()), pub


def public_path(private_path):
    base = private_path[:-4] if private_path.endswith(".pem") else private_path
    return base + ".pub.pem"


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise SigningError("cannot read key %s: %s" % (path, e.strerror))


def load_private(path):
    data = _read(path)
    phrase = os.environ.get(PASSPHRASE_ENV)
    try:
        key = serialization.load_pem_private_key(data, phrase.encode() if phrase else None)
    except (ValueError, TypeError) as e:
        raise SigningError("%s: not a usable private key (%s)" % (path, e))
    _check(key.public_key(), path)
    return key


def load_public(path):
    """The public key of a public or a private PEM file."""
    data = _read(path)
    if b"PRIVATE KEY" in data:
        return load_private(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise SigningError("%s: not a public key (%s)" % (path, e))
    _check(key, path)
    return key


def public_from_spki(der):
    key = serialization.load_der_public_key(der)
    _check(key, "key")
    return key


def sign(private_key, message):
    return private_key.sign(message, pss(), hashes.SHA256())


def verify(public_key, message, signature):
    try:
        public_key.verify(signature, message, pss(), hashes.SHA256())
        return True
    except InvalidSignature:
        return False
