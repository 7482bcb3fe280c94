"""The fleetbox AES-256 envelope, version 1, cloud side (docs/envelope.md).

An independent implementation of the document on `cryptography` (HKDF, HMAC,
AES-CBC, PKCS#7): it shares no code with firmware/fleetbox/envelope.py, so the
two checking each other against docs/vectors/envelope-v1.json proves the
document.

    opener = Opener(keys, replay=None, window=86400)
        keys(device_id: str, kid: int) -> bytes | None   (32-byte master key)
        replay: object with last_seq(device_id) -> int | None and
                commit(device_id, seq); default MemoryReplayStore()
    header, plaintext = opener.open(data, now=None)      # raises CloudEnvelopeError
    ... store plaintext durably ...
    opener.commit(header)            # == replay.commit(device_id, seq)

    seal(key, kid, device_id, seq, ts, plaintext, content_type=1, iv=None,
         direction="down") -> bytes                      # cloud -> box messages
    derive_keys(key, kid, direction="up") -> (enc_key, mac_key)
    parse_header(data) -> dict                           # raises CloudEnvelopeError
"""
import logging
import os
import struct
import threading
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

log = logging.getLogger("fleetbox.cloud.envelope")

MAGIC = b"FBE"
VERSION = 1
SALT = b"fleetbox-envelope-v1"
UP, DOWN = "up", "down"
HEADER = struct.Struct(">3sBIQIBB")  # magic, version, kid, seq, ts, content_type, id_len
MAX_ID_LEN = 32
IV_LEN = 16
TAG_LEN = 32
DEFAULT_WINDOW = 86400

# An unknown key id is checked against this key (per process, never any box's), so the answer
# costs the same key derivation and MAC as a known id's wrong MAC: timing tells no ids apart.
_DUMMY_KEY = os.urandom(32)

REASONS = ("malformed", "unknown-key", "bad-mac", "replay", "out-of-window",
           "unsupported-version", "bad-padding")


class CloudEnvelopeError(Exception):
    """Rejected envelope. .reason: one of REASONS. .duplicate: True when the
    envelope is a valid copy of the last committed one (a retried upload that
    is already stored: answer it as success). .header: the parsed header, when
    it could be parsed."""

    def __init__(self, reason, message="", header=None, duplicate=False):
        if reason not in REASONS:
            raise ValueError(f"unknown envelope error reason {reason!r}")
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.header = header
        self.duplicate = duplicate


class MemoryReplayStore:
    """In-memory replay store: last committed sequence number per device."""

    def __init__(self):
        self._last = {}
        self._lock = threading.Lock()

    def last_seq(self, device_id):
        with self._lock:
            return self._last.get(device_id)

    def commit(self, device_id, seq):
        with self._lock:
            last = self._last.get(device_id)
            if last is None or seq > last:
                self._last[device_id] = seq


def _labels(direction):
    if direction == UP:
        return b"up-enc", b"up-mac"
    if direction == DOWN:
        return b"down-enc", b"down-mac"
    raise ValueError("direction must be 'up' or 'down'")


def _hkdf(key, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=info).derive(key)


_DERIVED = {}           # (master key, kid, direction) -> (enc, mac): every upload and answer of a box needs them
MAX_DERIVED = 8192      # entries kept; the cache starts over when full


def derive_keys(key, kid, direction=UP):
    if len(key) != 32:
        raise ValueError("master key must be 32 bytes")
    key = bytes(key)
    got = _DERIVED.get((key, kid, direction))
    if got is None:
        k = kid.to_bytes(4, "big")
        enc_label, mac_label = _labels(direction)
        got = _hkdf(key, enc_label + k), _hkdf(key, mac_label + k)
        if len(_DERIVED) >= MAX_DERIVED:
            _DERIVED.clear()
        _DERIVED[(key, kid, direction)] = got
    return got


def _mac(mac_key, data):
    h = hmac.HMAC(mac_key, hashes.SHA256())
    h.update(data)
    return h


def parse_header(data):
    """Parse the (not yet authenticated) header; adds 'header_len'."""
    data = bytes(data)
    if len(data) < HEADER.size:
        raise CloudEnvelopeError("malformed", "shorter than a header")
    magic, version, kid, seq, ts, ctype, idlen = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CloudEnvelopeError("malformed", "bad magic")
    if version != VERSION:
        raise CloudEnvelopeError("unsupported-version", f"version {version}")
    if not 1 <= idlen <= MAX_ID_LEN:
        raise CloudEnvelopeError("malformed", f"device id length {idlen}")
    hlen = HEADER.size + idlen
    if len(data) < hlen:
        raise CloudEnvelopeError("malformed", "truncated header")
    did = data[HEADER.size:hlen]
    if any(c < 0x21 or c > 0x7E for c in did):
        raise CloudEnvelopeError("malformed", "device id not printable ASCII")
    if ctype == 0:
        raise CloudEnvelopeError("malformed", "content type 0")
    return {"version": version, "kid": kid, "seq": seq, "ts": ts, "content_type": ctype,
            "device_id": did.decode("ascii"), "header_len": hlen}


def seal(key, kid, device_id, seq, ts, plaintext, content_type=1, iv=None, direction=DOWN):
    did = device_id.encode("ascii") if isinstance(device_id, str) else bytes(device_id)
    if not 1 <= len(did) <= MAX_ID_LEN or any(c < 0x21 or c > 0x7E for c in did):
        raise ValueError("device id must be 1..32 printable ASCII bytes")
    if not 1 <= content_type <= 255:
        raise ValueError("content type must be 1..255")
    enc_key, mac_key = derive_keys(key, kid, direction)
    iv = os.urandom(IV_LEN) if iv is None else bytes(iv)
    if len(iv) != IV_LEN:
        raise ValueError("iv must be 16 bytes")
    header = HEADER.pack(MAGIC, VERSION, kid, seq, ts, content_type, len(did)) + did
    padder = padding.PKCS7(128).padder()
    padded = padder.update(bytes(plaintext)) + padder.finalize()
    enc = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).encryptor()
    ct = enc.update(padded) + enc.finalize()
    body = header + iv + ct
    return body + _mac(mac_key, body).finalize()


class Opener:
    """Authenticates, replay-checks and decrypts box -> cloud envelopes."""

    def __init__(self, keys, replay=None, window=DEFAULT_WINDOW, direction=UP):
        self.keys = keys
        self.replay = MemoryReplayStore() if replay is None else replay
        self.window = window
        self.direction = direction

    def open(self, data, now=None):
        """Return (header dict, plaintext) or raise CloudEnvelopeError.

        Order: parse -> key lookup -> MAC (constant time) -> time window ->
        replay -> decrypt -> padding. Does NOT commit the sequence number: call
        commit(header) once the plaintext is stored."""
        try:
            data = bytes(data)
        except TypeError:
            raise CloudEnvelopeError("malformed", "not bytes") from None
        hdr = parse_header(data)
        hlen = hdr["header_len"]
        clen = len(data) - hlen - IV_LEN - TAG_LEN
        if clen < 16 or clen % 16:
            raise CloudEnvelopeError("malformed", f"ciphertext length {clen}", hdr)
        key = self.keys(hdr["device_id"], hdr["kid"])
        enc_key, mac_key = derive_keys(_DUMMY_KEY if key is None else key, hdr["kid"], self.direction)
        body = data[:-TAG_LEN]
        try:
            _mac(mac_key, body).verify(data[-TAG_LEN:])     # constant-time comparison
            authentic = key is not None
        except InvalidSignature:
            authentic = False
        if not authentic:
            reason = "bad-mac" if key is not None else "unknown-key"
            detail = "" if key is not None else f"device {hdr['device_id']!r} kid {hdr['kid']}"
            raise CloudEnvelopeError(reason, detail, hdr)
        now = time.time() if now is None else now
        ts = hdr["ts"]
        if ts == 0:
            log.info("envelope from %s seq %d has ts 0 (box has no clock yet)",
                     hdr["device_id"], hdr["seq"])
        elif abs(ts - now) > self.window:
            raise CloudEnvelopeError("out-of-window", f"ts {ts} now {int(now)}", hdr)
        last = self.replay.last_seq(hdr["device_id"])
        if last is not None and hdr["seq"] <= last:
            dup = hdr["seq"] == last
            raise CloudEnvelopeError("replay", f"seq {hdr['seq']} last {last}"
                                + (" (duplicate)" if dup else ""), hdr, duplicate=dup)
        iv = data[hlen:hlen + IV_LEN]
        dec = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).decryptor()
        padded = dec.update(data[hlen + IV_LEN:-TAG_LEN]) + dec.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            plaintext = unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise CloudEnvelopeError("bad-padding", "", hdr) from None
        return hdr, plaintext

    def commit(self, header):
        """Record header's seq as stored (call after the plaintext is durable)."""
        self.replay.commit(header["device_id"], header["seq"])
