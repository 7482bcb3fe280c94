"""Port layer: the only firmware module that knows whether it runs on MicroPython or CPython.

Everything else imports what differs between the two runtimes from here, so the
firmware stays importable (and unit-testable with coverage) on CPython 3.11+.
"""
import sys
import hashlib

MICROPYTHON = sys.implementation.name == "micropython"

if MICROPYTHON:
    import cryptolib
    import time as _time
    from micropython import const  # noqa: F401
    from os import urandom  # noqa: F401

    def ticks_ms():
        return _time.ticks_ms()

    def ticks_diff(a, b):
        return _time.ticks_diff(a, b)

    def _aes(key, mode, iv):
        return cryptolib.aes(key, mode, iv) if iv is not None else cryptolib.aes(key, mode)

    def aes_ecb_encrypt(key, block):
        return _aes(key, 1, None).encrypt(block)

    def aes_cbc_encrypt(key, iv, data):
        return _aes(key, 2, iv).encrypt(data)

    def aes_cbc_decrypt(key, iv, data):
        return _aes(key, 2, iv).decrypt(data)

    def collect():
        import gc
        gc.collect()

    def mem_free():
        import gc
        return gc.mem_free()

else:
    import time as _time
    from os import urandom  # noqa: F401
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    def const(x):
        return x

    def ticks_ms():
        return int(_time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def aes_ecb_encrypt(key, block):
        e = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()
        return e.update(bytes(block)) + e.finalize()

    def aes_cbc_encrypt(key, iv, data):
        e = Cipher(algorithms.AES(bytes(key)), modes.CBC(bytes(iv))).encryptor()
        return e.update(bytes(data)) + e.finalize()

    def aes_cbc_decrypt(key, iv, data):
        d = Cipher(algorithms.AES(bytes(key)), modes.CBC(bytes(iv))).decryptor()
        return d.update(bytes(data)) + d.finalize()

    def collect():
        pass

    def mem_free():
        return -1


def time_s():
    """UNIX seconds from the host clock (the box sets its clock from the cloud)."""
    return int(_time.time())


async def sleep_ms(ms):
    import asyncio
    await asyncio.sleep(ms / 1000)


def _hash_new(name):
    return getattr(hashlib, name)()


def hmac_digest(key, msg, name="sha256"):
    """HMAC (RFC 2104) over hashlib, since MicroPython has no `hmac` module."""
    block = 128 if name in ("sha384", "sha512") else 64
    if len(key) > block:
        h = _hash_new(name)
        h.update(key)
        key = h.digest()
    key = bytes(key) + b"\x00" * (block - len(key))
    inner = _hash_new(name)
    inner.update(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = _hash_new(name)
    outer.update(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def consteq(a, b):
    """Constant-time comparison for MACs."""
    if len(a) != len(b):
        return False
    r = 0
    for x, y in zip(a, b):
        r |= x ^ y
    return r == 0
