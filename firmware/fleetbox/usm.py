"""SNMPv3 User-based Security Model (RFC 3414) for the manager side.

Keys (password-to-key, localisation to an engine ID), HMAC authentication
(RFC 3414 MD5/SHA-96, RFC 7860 SHA-2), AES-CFB privacy (RFC 3826, and the 192/256-bit
key extensions that net-snmp and Cisco use), and the SNMPv3 message wrapper
(RFC 3412). The request/discovery logic lives in fleetbox.snmp's Client.
"""
import hashlib

from fleetbox import port as _port
from fleetbox.errors import FleetboxError
from fleetbox.ber import (
    BERError, read_tlv, decode_int, encode_int, tlv, header_len,
    INTEGER, OCTET_STRING, SEQUENCE,
)

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
FLAG_REPORTABLE = 4
SECURITY_MODEL_USM = 3
TIME_WINDOW = 150
MAX_BOOTS = 2147483647

# usmStats counters an agent reports (RFC 3414 5): OID -> name
USM_STATS = "1.3.6.1.6.3.15.1.1."
REPORT_NAMES = {
    "1.3.6.1.6.3.15.1.1.1.0": "unsupportedSecLevels",
    "1.3.6.1.6.3.15.1.1.2.0": "notInTimeWindows",
    "1.3.6.1.6.3.15.1.1.3.0": "unknownUserNames",
    "1.3.6.1.6.3.15.1.1.4.0": "unknownEngineIDs",
    "1.3.6.1.6.3.15.1.1.5.0": "wrongDigests",
    "1.3.6.1.6.3.15.1.1.6.0": "decryptionErrors",
    "1.3.6.1.6.3.11.2.1.1.0": "unknownSecurityModels",
    "1.3.6.1.6.3.11.2.1.2.0": "invalidMsgs",
    "1.3.6.1.6.3.11.2.1.3.0": "unknownPDUHandlers",
    "1.3.6.1.6.3.12.1.4.0": "unavailableContexts",
    "1.3.6.1.6.3.12.1.5.0": "unknownContexts",
}
NOT_IN_TIME_WINDOW = "1.3.6.1.6.3.15.1.1.2.0"
UNKNOWN_ENGINE_ID = "1.3.6.1.6.3.15.1.1.4.0"

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


def _iv(boots, time, salt):
    return (boots.to_bytes(4, "big") + time.to_bytes(4, "big") + salt)


# ---------------------------------------------------------------- messages

class Message:
    """A decoded SNMPv3 message, before its security is checked. `auth_at` is the
    offset of the MAC inside `data`; `scoped` is the plaintext ScopedPDU's (start, end)
    or None when `encrypted` holds the encryptedPDU octets."""

    def __init__(self):
        self.data = None
        self.msg_id = 0
        self.max_size = 0
        self.flags = 0
        self.engine_id = b""
        self.boots = 0
        self.time = 0
        self.user = b""
        self.auth_params = b""
        self.auth_at = 0
        self.priv_params = b""
        self.scoped = None
        self.encrypted = None


def _expect(b, pos, end, tag):
    t, s, e = read_tlv(b, pos, end)
    if t != tag:
        raise BERError("expected tag 0x%02x, got 0x%02x" % (tag, t))
    return s, e


def _uint(b, s, e):
    v = decode_int(b, s, e)
    if v < 0 or v > MAX_BOOTS:
        raise BERError("value out of range")
    return v


def decode_message(data):
    """Parse an SNMPv3 message's header and USM parameters (RFC 3412 6, RFC 3414 2.4).
    Raises BERError (only) on malformed input."""
    n = len(data)
    b = memoryview(data)
    s, e = _expect(b, 0, n, SEQUENCE)
    if e != n:
        raise BERError("trailing data")
    s1, p = _expect(b, s, e, INTEGER)
    if decode_int(b, s1, p) != 3:
        raise BERError("not SNMPv3")
    m = Message()
    m.data = data
    gs, ge = _expect(b, p, e, SEQUENCE)
    x, p = _expect(b, gs, ge, INTEGER)
    m.msg_id = _uint(b, x, p)
    x, p = _expect(b, p, ge, INTEGER)
    m.max_size = _uint(b, x, p)
    x, p = _expect(b, p, ge, OCTET_STRING)
    if p - x != 1:
        raise BERError("bad msgFlags")
    m.flags = b[x]
    x, p = _expect(b, p, ge, INTEGER)
    if decode_int(b, x, p) != SECURITY_MODEL_USM or p != ge:
        raise BERError("not USM")
    ss, se = _expect(b, ge, e, OCTET_STRING)
    us, ue = _expect(b, ss, se, SEQUENCE)
    if ue != se:
        raise BERError("trailing data in security parameters")
    x, p = _expect(b, us, ue, OCTET_STRING)
    if p - x > 32:
        raise BERError("engine ID too long")
    m.engine_id = bytes(b[x:p])
    x, p = _expect(b, p, ue, INTEGER)
    m.boots = _uint(b, x, p)
    x, p = _expect(b, p, ue, INTEGER)
    m.time = _uint(b, x, p)
    x, p = _expect(b, p, ue, OCTET_STRING)
    if p - x > 32:
        raise BERError("user name too long")
    m.user = bytes(b[x:p])
    x, p = _expect(b, p, ue, OCTET_STRING)
    m.auth_params = bytes(b[x:p])
    m.auth_at = x
    x, p = _expect(b, p, ue, OCTET_STRING)
    m.priv_params = bytes(b[x:p])
    if p != ue:
        raise BERError("trailing data in security parameters")
    t, x, p = read_tlv(b, se, e)
    if p != e:
        raise BERError("trailing data")
    if t == SEQUENCE:
        m.scoped = (se, e)
    elif t == OCTET_STRING:
        m.encrypted = bytes(b[x:p])
    else:
        raise BERError("bad msgData")
    return m


def decode_scoped(b, s, e):
    """ScopedPDU -> (contextEngineID, contextName, pdu_start, pdu_end)."""
    s0, e0 = _expect(b, s, e, SEQUENCE)
    if e0 != e:
        raise BERError("trailing data in ScopedPDU")
    x, p = _expect(b, s0, e0, OCTET_STRING)
    ceid = bytes(b[x:p])
    x, p = _expect(b, p, e0, OCTET_STRING)
    cname = bytes(b[x:p])
    return ceid, cname, p, e0


def verify(m, user):
    """True when m carries user's valid MAC (RFC 3414 6.3.2 / 7.3.2)."""
    if not user.auth:
        return False
    ka, _ = user.keys(m.engine_id)
    n = user.mac_len
    if len(m.auth_params) != n:
        return False
    buf = bytearray(m.data)
    buf[m.auth_at:m.auth_at + n] = b"\x00" * n
    return _port.consteq(hmac(user.hash_name, ka, buf)[:n], m.auth_params)


def decrypt(m, user):
    """The plaintext ScopedPDU of an encrypted message; BERError when it cannot be."""
    if len(m.priv_params) != 8 or m.encrypted is None:
        raise BERError("bad privacy parameters")
    _, kp = user.keys(m.engine_id)
    return aes_cfb(kp, _iv(m.boots, m.time, m.priv_params), m.encrypted, True)


def encode_message(msg_id, max_size, user, engine_id, boots, time, scoped_pdu, salt=None,
                   reportable=True, flags=None):
    """An SNMPv3 message carrying scoped_pdu (the encoded ScopedPDU) for user, secured
    at the user's level (flags override it: discovery sends noAuthNoPriv). salt: 8
    octets, needed for privacy."""
    if flags is None:
        flags = user.flags
    if reportable:
        flags |= FLAG_REPORTABLE
    mac_len = user.mac_len if flags & FLAG_AUTH else 0
    priv = b""
    data = scoped_pdu
    if flags & FLAG_PRIV:
        _, kp = user.keys(engine_id)
        priv = bytes(salt)
        data = tlv(OCTET_STRING, aes_cfb(kp, _iv(boots, time, priv), scoped_pdu, False))
    head = (tlv(OCTET_STRING, engine_id) + encode_int(boots) + encode_int(time)
            + tlv(OCTET_STRING, user.name))
    sp_body = head + tlv(OCTET_STRING, b"\x00" * mac_len) + tlv(OCTET_STRING, priv)
    sp = tlv(SEQUENCE, sp_body)
    gd = tlv(SEQUENCE, encode_int(msg_id) + encode_int(max_size)
             + tlv(OCTET_STRING, bytes((flags,))) + encode_int(SECURITY_MODEL_USM))
    ver = encode_int(3)
    body_len = len(ver) + len(gd) + header_len(len(sp)) + len(sp) + len(data)
    out = bytearray(tlv(SEQUENCE, ver + gd + tlv(OCTET_STRING, sp) + data))
    if mac_len:
        at = (header_len(body_len) + len(ver) + len(gd) + header_len(len(sp))
              + header_len(len(sp_body)) + len(head) + header_len(mac_len))
        ka, _ = user.keys(engine_id)
        out[at:at + mac_len] = hmac(user.hash_name, ka, out)[:mac_len]
    return bytes(out)


def encode_scoped(context_engine_id, context_name, pdu):
    return tlv(SEQUENCE, tlv(OCTET_STRING, context_engine_id) + tlv(OCTET_STRING, context_name) + pdu)


class Engine:
    """What a manager knows of one authoritative engine: its ID, and its boots and time
    as of a local tick (RFC 3414 2.3: the time moves on with the local clock)."""

    def __init__(self, engine_id, boots, time):
        self.engine_id = engine_id
        self.set_time(boots, time)

    def set_time(self, boots, time):
        self.boots = boots
        self.time = time
        self.at = _port.ticks_ms()

    def now(self):
        """(boots, estimated time)."""
        t = self.time + _port.ticks_diff(_port.ticks_ms(), self.at) // 1000
        return self.boots, min(t, MAX_BOOTS)

    def in_window(self, boots, time):
        """RFC 3414 3.2.7b for a non-authoritative engine: newer values are learnt;
        an older boots, or a time more than 150 s behind, is outside the window."""
        my_boots, my_time = self.now()
        if boots == MAX_BOOTS or boots < my_boots:
            return False
        if boots > my_boots or time > my_time:
            self.set_time(boots, time)
            return True
        return time >= my_time - TIME_WINDOW
