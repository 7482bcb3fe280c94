"""SNMPv3 USM credentials and their cryptography (RFC 3414, RFC 7860, RFC 3826): the
protocol tables, password-to-key and key localisation, HMAC, AES-CFB, and User, which
keeps a user's keys. fleetbox.usm wraps messages with them and re-exports these names.
"""
import hashlib

from fleetbox import port as _port
from fleetbox.errors import FleetboxError

# name: (hash, digest octets, MAC octets kept)
AUTH_PROTOCOLS = {
    "MD5": ("md5", 16, 12),
    "SHA": ("sha1", 20, 12),
    "SHA224": ("sha224", 28, 16),
    "SHA256": ("sha256", 32, 24),
    "SHA384": ("sha384", 48, 32),
    "SHA512": ("sha512", 64, 48),
}
# name: (AES key octets, key extension). "blumenthal" (draft-blumenthal-aes-usm-04:
# Kul || H(Kul) ...) is what net-snmp's AES-192/AES-256 do; "reeder" (the 3DES draft's
# password-to-key repeated) is Cisco's, offered as AES192C/AES256C.
PRIV_PROTOCOLS = {
    "AES": (16, None),
    "AES192": (24, "blumenthal"),
    "AES256": (32, "blumenthal"),
    "AES192C": (24, "reeder"),
    "AES256C": (32, "reeder"),
}
_ALIASES = {"SHA1": "SHA", "SHA-1": "SHA", "SHA-224": "SHA224", "SHA-256": "SHA256",
            "SHA-384": "SHA384", "SHA-512": "SHA512", "AES128": "AES", "AES-128": "AES",
            "AES-192": "AES192", "AES-256": "AES256"}

FLAG_AUTH = 1
FLAG_PRIV = 2
_PW_LEN = 1048576  # RFC 3414 A.2: the password is repeated to 1 MiB


class UsmError(FleetboxError):
    """A credential that cannot be used (unknown protocol, short password, DES)."""


def _proto(name, table, what):
    if name is None or name == "" or name is False:
        return None
    key = name.upper() if isinstance(name, str) else name.decode().upper()
    key = _ALIASES.get(key, key)
    if key in ("DES", "3DES", "DES3", "3DESEDE"):
        raise UsmError("%s privacy is not supported (broken cipher); set the device to AES" % key)
    if key not in table:
        raise UsmError("unknown %s protocol %r (one of %s)" % (what, name, ", ".join(sorted(table))))
    return key


def _b(v):
    return v.encode() if isinstance(v, str) else bytes(v)


def _hash(name, data=b""):
    """hashlib's hash when the runtime has it; else the pure-Python SHA-2 (imported only
    then: MicroPython lacks sha224/384/512)."""
    fn = getattr(hashlib, name, None)
    if fn is not None:
        return fn(data)
    from fleetbox import sha2
    return sha2.new(name, data)


# ------------------------------------------------------------------- keys

def hmac(hash_name, key, data):
    """HMAC (RFC 2104) over _hash, which has the SHA-2 sizes MicroPython lacks."""
    h = _hash(hash_name)
    block = 128 if hash_name in ("sha384", "sha512") else 64
    if len(key) > block:
        key = _hash(hash_name, key).digest()
    key = bytes(key) + b"\x00" * (block - len(key))
    inner = _hash(hash_name, bytes(b ^ 0x36 for b in key))
    inner.update(data)
    h.update(bytes(b ^ 0x5C for b in key))
    h.update(inner.digest())
    return h.digest()


def password_to_key(hash_name, password):
    """Ku (RFC 3414 A.2.1/A.2.2, RFC 7860 9.3): the hash of the password repeated to 1 MiB."""
    password = _b(password)
    if not password:
        raise UsmError("empty password")
    n = len(password)
    reps = (4096 + n - 1) // n
    chunk = password * reps          # starts at a multiple of n: every chunk is the same
    h = _hash(hash_name)
    left = _PW_LEN
    while left >= len(chunk):
        h.update(chunk)
        left -= len(chunk)
    if left:
        h.update(chunk[:left])
    return h.digest()


def localize_key(hash_name, ku, engine_id):
    """Kul = H(Ku || engineID || Ku) (RFC 3414 2.6)."""
    h = _hash(hash_name)
    h.update(ku)
    h.update(engine_id)
    h.update(ku)
    return h.digest()


def extend_priv_key(hash_name, kul, size, method, engine_id):
    """Lengthen a localised key for AES-192/256 (key extension, see PRIV_PROTOCOLS)."""
    while len(kul) < size:
        if method == "blumenthal":
            kul = kul + _hash(hash_name, kul).digest()
        else:
            kul = kul + localize_key(hash_name, password_to_key(hash_name, kul), engine_id)
    return kul[:size]


class User:
    """An SNMPv3 USM user. auth/priv are protocol names (AUTH_PROTOCOLS, PRIV_PROTOCOLS)
    or None. The 1 MiB password hashing happens once; localised keys are kept for the
    last few engine IDs. auth_ku/priv_ku: the master keys (password_to_key of the
    passphrases, computed elsewhere) instead of passphrases, for a box too slow to hash
    1 MiB in pure Python (SHA-224/384/512 on MicroPython)."""

    MAX_ENGINES = 16

    def __init__(self, name, auth=None, auth_pass=None, priv=None, priv_pass=None,
                 auth_ku=None, priv_ku=None):
        _port.secret(auth_pass)     # first: even a refused passphrase never reaches the log
        _port.secret(priv_pass)
        self.name = _b(name)
        if len(self.name) > 32:
            raise UsmError("user name longer than 32 octets")
        self.auth = _proto(auth, AUTH_PROTOCOLS, "authentication")
        self.priv = _proto(priv, PRIV_PROTOCOLS, "privacy")
        if self.priv and not self.auth:
            raise UsmError("privacy needs authentication (authPriv)")
        for proto, pw, ku, what in ((self.auth, auth_pass, auth_ku, "authentication"),
                                    (self.priv, priv_pass, priv_ku, "privacy")):
            if not proto:
                continue
            if ku is not None:
                if len(ku) != AUTH_PROTOCOLS[self.auth][1]:
                    raise UsmError("%s master key must be %d octets for %s" % (
                        what, AUTH_PROTOCOLS[self.auth][1], self.auth))
            elif pw is None or len(_b(pw)) < 8:
                raise UsmError("%s passphrase must be at least 8 characters" % what)
        self._auth_pass = _b(auth_pass) if self.auth and auth_ku is None else None
        self._priv_pass = _b(priv_pass) if self.priv and priv_ku is None else None
        self._ku = None
        if self.auth and auth_ku is not None and (not self.priv or priv_ku is not None):
            self._ku = (bytes(auth_ku), bytes(priv_ku) if self.priv else None)
        elif auth_ku is not None or priv_ku is not None:
            raise UsmError("give master keys for both authentication and privacy, or neither")
        self._local = {}
        self.flags = (FLAG_AUTH if self.auth else 0) | (FLAG_PRIV if self.priv else 0)

    @property
    def level(self):
        return ("noAuthNoPriv", "authNoPriv", "?", "authPriv")[self.flags]

    @property
    def hash_name(self):
        return AUTH_PROTOCOLS[self.auth][0]

    @property
    def mac_len(self):
        return AUTH_PROTOCOLS[self.auth][2] if self.auth else 0

    def keys(self, engine_id):
        """(auth key, priv key) localised to engine_id (None where not used)."""
        engine_id = bytes(engine_id)
        k = self._local.get(engine_id)
        if k is not None:
            return k
        if not self.auth:
            return None, None
        hn = self.hash_name
        if self._ku is None:
            ku_a = password_to_key(hn, self._auth_pass)
            ku_p = None
            if self.priv:
                ku_p = ku_a if self._priv_pass == self._auth_pass else password_to_key(hn, self._priv_pass)
            self._ku = (ku_a, ku_p)
        ku_a, ku_p = self._ku
        ka = localize_key(hn, ku_a, engine_id)
        kp = None
        if self.priv:
            size, ext = PRIV_PROTOCOLS[self.priv]
            kp = localize_key(hn, ku_p, engine_id)
            if len(kp) < size:
                kp = extend_priv_key(hn, kp, size, ext, engine_id)
            kp = kp[:size]
        if len(self._local) >= self.MAX_ENGINES:
            self._local.pop(next(iter(self._local)))
        self._local[engine_id] = (ka, kp)
        return ka, kp


# ---------------------------------------------------------------- privacy

def aes_cfb(key, iv, data, decrypt):
    """AES-CFB128 (RFC 3826 3.1.3/3.1.4) over the block cipher in fleetbox.port."""
    try:
        enc = _port.aes_ecb_encryptor(key)
    except ValueError:  # MicroPython's cryptolib has no 192-bit keys
        from fleetbox import aes
        enc = aes.encryptor(key)
    out = bytearray(len(data))
    fb = bytes(iv)
    for i in range(0, len(data), 16):
        ks = enc(fb)
        blk = data[i:i + 16]
        n = len(blk)
        for j in range(n):
            out[i + j] = blk[j] ^ ks[j]
        fb = bytes(blk) if decrypt else bytes(out[i:i + 16])
    return bytes(out)
