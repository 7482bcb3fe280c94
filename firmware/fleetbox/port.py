"""Port layer: the only firmware module that knows whether it runs on MicroPython or CPython.

Everything else imports what differs between the two runtimes from here, so the
firmware stays importable (and unit-testable with coverage) on CPython 3.11+.
"""
import sys
import hashlib
import io

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

    def aes_cbc_encrypt_into(key, iv, buf):
        """Encrypt the writable buffer buf (a multiple of 16 bytes) in place."""
        _aes(key, 2, iv).encrypt(buf, buf)

    def aes_ecb_encryptor(key):
        """A function block -> AES(key) encryption of that 16-byte block (one key
        schedule for many blocks: SNMPv3 CFB mode is built on it)."""
        return _aes(key, 1, None).encrypt

    def aes_ecb_decryptor(key):
        """A function block -> AES(key) decryption of that 16-byte block (RFC 3394 unwrap)."""
        return _aes(key, 1, None).decrypt

    def aes_cbc_decryptor(key, iv):
        """An object whose decrypt(src, dst) deciphers AES-CBC into dst, chaining from iv
        across calls (update images: one chunk per call, no allocation)."""
        return _aes(key, 2, iv)

    def collect():
        import gc
        gc.collect()

    def mem_free():
        import gc
        return gc.mem_free()

    def wait_readable(sock):
        """Await until the non-blocking socket `sock` is readable (asyncio's I/O queue,
        as MicroPython's own asyncio/stream.py does). Use as `await wait_readable(s)`."""
        from asyncio import core
        yield core._io_queue.queue_read(sock)

    def recv_datagram(sock, maxsize):
        """Receive one datagram of at most maxsize bytes: return (data, address).

        recvfrom(maxsize) would allocate a maxsize block for every datagram (which a
        fragmented heap may not have, even when the reply is small), and readinto()
        on a socket runs several reads into one buffer, joining datagrams. So: peek
        at the sender and the first octets, take the size of the message from its
        outer BER header, and recv() just that many bytes (one read: one datagram;
        the rest of a longer datagram is discarded by the kernel).
        """
        import socket
        try:
            head, addr = sock.recvfrom(6, socket.MSG_PEEK)
        except TypeError:  # a port whose recvfrom() takes no flags
            return sock.recvfrom(maxsize)
        # one octet more than the header announces, so trailing junk is still seen
        return sock.recv(min(_ber_size(head) + 1, maxsize)), addr

    def _ber_size(head):
        """Total size of the TLV whose first octets are head; 1 when head is not a
        SEQUENCE header (such a datagram is read as one octet, and so discarded)."""
        if len(head) < 2 or head[0] != 0x30:
            return 1
        n = head[1]
        if n < 0x80:
            return 2 + n
        k = n & 0x7F
        if k == 0 or k > 4 or len(head) < 2 + k:
            return 1
        v = 0
        for i in range(2, 2 + k):
            v = (v << 8) | head[i]
        return 2 + k + v

    def addr_key(addr):
        """A comparable (address, port) key of an IPv4 socket address, whatever form
        the port's socket module uses (sockaddr bytes on unix, tuples on lwIP)."""
        if isinstance(addr, tuple):
            return addr[0], addr[1]
        return bytes(addr[2:8])

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

    def aes_cbc_encrypt_into(key, iv, buf):
        """Encrypt the writable buffer buf (a multiple of 16 bytes) in place."""
        buf[:] = aes_cbc_encrypt(key, iv, buf)

    def aes_ecb_encryptor(key):
        """A function block -> AES(key) encryption of that 16-byte block (one key
        schedule for many blocks: SNMPv3 CFB mode is built on it)."""
        return Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor().update

    def collect():
        pass

    def aes_ecb_decryptor(key):
        """A function block -> AES(key) decryption of that 16-byte block (RFC 3394 unwrap)."""
        return Cipher(algorithms.AES(bytes(key)), modes.ECB()).decryptor().update

    class _CbcDecryptor:
        def __init__(self, key, iv):
            self._d = Cipher(algorithms.AES(bytes(key)), modes.CBC(bytes(iv))).decryptor()

        def decrypt(self, src, dst):
            dst[:len(src)] = self._d.update(bytes(src))

    def aes_cbc_decryptor(key, iv):
        """An object whose decrypt(src, dst) deciphers AES-CBC into dst, chaining from iv
        across calls (update images: one chunk per call, no allocation)."""
        return _CbcDecryptor(key, iv)

    def mem_free():
        return -1

    def _wake(fut):
        if not fut.done():
            fut.set_result(None)

    async def wait_readable(sock):
        """Await until the non-blocking socket `sock` is readable."""
        import asyncio
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.add_reader(sock, _wake, fut)
        try:
            await fut
        finally:
            loop.remove_reader(sock)  # by object: still works once sock is closed

    def recv_datagram(sock, maxsize):
        """Receive one datagram of at most maxsize bytes: return (data, address)."""
        return sock.recvfrom(maxsize)

    def addr_key(addr):
        """A comparable (address, port) key of an IPv4 socket address."""
        return addr[0], addr[1]


# -- flash files: every write the firmware makes on the data partition goes through these,
# so a board (the sim's flash switch) or a test can fail any of them as a full or worn chip does.
ENOSPC = const(28)
EIO = const(5)
ENOENT = const(2)
_flash_fault = None


def set_flash_fault(fault):
    """Install fault(op, path) -> errno (ENOSPC, EIO) or 0, consulted before each flash write;
    op is "open", "write" (through flash_stream), "close" (the data went in, the file is being committed), "rename" or
    "remove"; the reads a box cannot start without ask too: "list" (a folder) and "read"
    (opening a file). None: no injected faults."""
    global _flash_fault
    _flash_fault = fault


def _flash_check(op, path):
    if _flash_fault is not None:
        err = _flash_fault(op, path)
        if err:
            raise OSError(err)


def exists(path):
    """Whether `path` names a file or folder (os.path is not on the box)."""
    import os
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def listdir(path):
    import os
    _flash_check("list", path)
    return os.listdir(path)


def open_read(path, binary=False):
    _flash_check("read", path)
    return open(path, "rb" if binary else "r")


def open_append(path, binary=True):
    """A file opened to add to its end (created when missing)."""
    _flash_check("open", path)
    return open(path, "ab" if binary else "a")


def open_write(path, binary=False):
    """A file opened for writing (replacing it)."""
    _flash_check("open", path)
    return open(path, "wb" if binary else "w")


class _CheckedStream(io.IOBase):
    def __init__(self, f, path):
        self.f = f
        self.path = path

    def write(self, data):
        _flash_check("write", self.path)
        return self.f.write(data)


def flash_stream(f, path):
    """`f` itself; while a flash fault is installed, `f` behind a stream that asks it ("write")
    before each write, so a test or the sim's flash switch can cut a file in the middle of a
    json.dump as a full or worn chip does."""
    if _flash_fault is None:
        return f
    return _CheckedStream(f, path)


def close_write(f, path):
    """Commit and close a file open_write() gave; it is closed even when this raises."""
    try:
        _flash_check("close", path)
    finally:
        f.close()


def sync_write(f, path):
    """Commit what was written to a file that stays open (a resume record will count on it)."""
    _flash_check("close", path)
    f.flush()


def rename(src, dst):
    import os
    _flash_check("rename", dst)
    os.rename(src, dst)


def remove(path):
    import os
    _flash_check("remove", path)
    os.remove(path)


def remove_tree(path, keep=False):
    """Remove the file or folder `path` and everything below it (`keep`: the folder itself stays,
    emptied). Nothing there is nothing to do. One failed removal stops nothing: every other entry
    is still removed, then the first failure is raised (OSError), so the caller knows the tree is
    not gone. What that means is the caller's: a pack install target that cannot be emptied
    interrupts the install (fleetbox.pack); a factory reset logs it and goes on (fleetbox.provision)."""
    err = _remove_tree(path, keep)
    if err is not None:
        raise err


def _remove_tree(path, keep):
    import os
    try:
        mode = os.stat(path)[0]
    except OSError:
        return None
    try:
        if not mode & 0x4000:        # S_IFDIR: the same bit on LittleFS and POSIX
            remove(path)
            return None
        names = listdir(path)
    except OSError as e:
        return e
    first = None
    for name in names:
        e = _remove_tree(path + "/" + name, False)
        first = first or e
    if first is None and not keep:
        try:
            _flash_check("remove", path)
            os.rmdir(path)
        except OSError as e:
            first = e
    return first


# -- the box's log (docs/logging.md): one line per event, "I uplink: sent 3 batches"
DEBUG = const(0)
INFO = const(1)
WARN = const(2)
ERROR = const(3)
OFF = const(4)              # a threshold only: nothing is logged
LEVELS = ("debug", "info", "warn", "error", "off")   # config "log_level" names, by level
_LETTERS = "DIWE"
MIN_SECRET = const(4)       # shorter secrets would blot out ordinary words; never log them either

_log_level = INFO
_log_sink = None            # None: print (the UART on a board, stdout in the simulator)
_secrets = []


def set_log_level(level):
    """Log from `level` up: DEBUG..ERROR, OFF, or one of LEVELS' names."""
    global _log_level
    if isinstance(level, str):
        if level not in LEVELS:
            raise ValueError("log level %r is not one of %s" % (level, ", ".join(LEVELS)))
        level = LEVELS.index(level)
    if not DEBUG <= level <= OFF:
        raise ValueError("log level %r out of range" % level)
    _log_level = level


def log_level():
    return _log_level


def logs(level):
    """True when a line at `level` would be written: skip building a costly message otherwise."""
    return level >= _log_level


def set_log_sink(sink):
    """Send log lines to sink(line) instead of print (tests); None restores print."""
    global _log_sink
    _log_sink = sink


def secret(value):
    """Never let `value` (a community, password, key: str or bytes) reach the log: log()
    masks it as *** wherever it shows up, inside an error message or a repr."""
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode()
        except UnicodeError:
            return      # not text: it cannot appear in a line of text as itself
    if value and len(value) >= MIN_SECRET and value not in _secrets:
        _secrets.append(value)


def log(tag, level, msg):
    """One line "L tag: msg" (L: D, I, W, E) when level reaches the threshold."""
    if level < _log_level:
        return
    for s in _secrets:
        if s in msg:
            msg = msg.replace(s, "***")
    line = "%s %s: %s" % (_LETTERS[level], tag, msg)
    if _log_sink is None:
        print(line)
    else:
        _log_sink(line)


_clock = None


def set_clock(source):
    """Take the time from source() (UNIX seconds or None) instead of the host clock:
    the box installs its board's clock, which may only learn the time from the cloud."""
    global _clock
    _clock = source


def time_s():
    """UNIX seconds; 0 while the box's clock does not know the time yet (see set_clock)."""
    if _clock is not None:
        return _clock() or 0
    return int(_time.time())


def time_known():
    """False while the box's clock has not learnt the time yet (time_s() then says 0)."""
    return time_s() != 0


async def sleep_ms(ms):
    import asyncio
    await asyncio.sleep(ms / 1000)


def _hash_new(name):
    return getattr(hashlib, name)()


def hmac_digest(key, msg, name="sha256"):
    """HMAC (RFC 2104) over hashlib, since MicroPython has no `hmac` module."""
    h = _Hmac(key, name)
    h.update(msg)
    return h.digest()


class _Hmac:
    def __init__(self, key, name):
        block = 128 if name in ("sha384", "sha512") else 64
        if len(key) > block:
            h = _hash_new(name)
            h.update(key)
            key = h.digest()
        key = bytes(key) + b"\x00" * (block - len(key))
        self._name = name
        self._okey = bytes(b ^ 0x5C for b in key)
        self._inner = _hash_new(name)
        self._inner.update(bytes(b ^ 0x36 for b in key))

    def update(self, msg):
        self._inner.update(msg)

    def digest(self):
        """The MAC; call once, after the last update()."""
        outer = _hash_new(self._name)
        outer.update(self._okey)
        outer.update(self._inner.digest())
        return outer.digest()


def hmac_new(key, name="sha256"):
    """Incremental HMAC: an object with update(msg) and digest(), for MACing streams."""
    return _Hmac(key, name)


def consteq(a, b):
    """Constant-time comparison for MACs."""
    if len(a) != len(b):
        return False
    r = 0
    for x, y in zip(a, b):
        r |= x ^ y
    return r == 0


def cloud_suites(names):
    """The cipher suites the box offers the cloud, of those its mbedtls build has (names as
    mbedtls spells them): ECDHE (forward secrecy) with AES-GCM, AES-CCM or ChaCha20-Poly1305,
    and TLS 1.3's own suites (all AEAD, all ephemeral); no static RSA, no PSK, no CBC, no
    8-byte CCM tags (docs/uplink.md). A TLS 1.3 build given no 1.3 suite cannot connect."""
    out = []
    for n in names:
        if "CCM-8" in n:
            continue
        if n.startswith("TLS1-3-") or (("-ECDHE-ECDSA-" in n or "-ECDHE-RSA-" in n) and (
                "CHACHA20-POLY1305" in n or ("-AES-" in n and ("-GCM-" in n or n.endswith("-CCM"))))):
            out.append(n)
    return out


def _mp_tls_context(ca_der, client=None):
    """MicroPython: a client context for the cloud, and the dict {depth: DER} its verify
    callback fills, so the caller can pin the leaf's key and see the chain reach ca_der.

    CERT_OPTIONAL: mbedtls's verdict also judges validity dates by a clock the box may not
    have yet (it learns the time from the cloud); the pin is what is trusted (docs/uplink.md).
    client: (certificate DER, private key DER) the box shows when the server asks (provisioning)."""
    import tls
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_OPTIONAL
    ctx.set_ciphers(cloud_suites(ctx.get_ciphers()))
    ctx.load_verify_locations(ca_der)
    if client:
        ctx.load_cert_chain(client[0], client[1])
    chain = {}

    def keep(cert, depth):
        chain[depth] = bytes(cert)
        return 0

    ctx.verify_callback = keep
    return ctx, chain


def tls_wrap(sock, server_hostname, ca_der, client=None):
    """TLS 1.2+ client over a connected socket, server verified against ca_der.

    Returns (tls_socket, leaf_certificate_der) so callers can pin the server key.
    """
    if MICROPYTHON:
        ctx, chain = _mp_tls_context(ca_der, client)
        s = ctx.wrap_socket(sock, server_hostname=server_hostname)
        _chained(s, chain, ca_der)
        return s, chain.get(0)
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL")
    ctx.load_verify_locations(cadata=bytes(ca_der))
    if client:
        _cpython_client_cert(ctx, client)
    s = ctx.wrap_socket(sock, server_hostname=server_hostname)
    return s, s.getpeercert(True)


def _cpython_client_cert(ctx, client):
    # CPython's ssl loads a key pair only from files: a private temporary PEM, removed at once
    import os
    import ssl
    import tempfile
    from binascii import b2a_base64
    key_pem = b"-----BEGIN PRIVATE KEY-----\n" + b2a_base64(client[1]) + b"-----END PRIVATE KEY-----\n"
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(ssl.DER_cert_to_PEM_cert(client[0]).encode() + key_pem)
        ctx.load_cert_chain(path)
    finally:
        os.remove(path)


def gc_threshold(nbytes):
    """MicroPython: collect garbage after every `nbytes` allocated (a small heap that is
    collected often fragments less); no-op on CPython."""
    try:
        import gc
        gc.threshold(nbytes)
    except (AttributeError, TypeError):
        pass


# -- non-blocking TLS for the uplink (MicroPython's asyncio drives the socket; see docs/uplink.md)
ASYNC_TLS = MICROPYTHON   # CPython (tests, host tools) uses the blocking client with timeouts


def _io_wait(sock, write):
    from asyncio import core
    if write:
        yield core._io_queue.queue_write(sock)
    else:
        yield core._io_queue.queue_read(sock)


async def wait_io(sock, write=False):
    """MicroPython: await until the non-blocking socket is writable (or readable)."""
    await _io_wait(sock, write)


async def tls_handshake(sock, server_hostname, ca_der, client=None):
    """MicroPython: TLS client over the connected non-blocking socket `sock`, the server
    verified against ca_der; returns (tls socket, leaf certificate DER) once the server's
    certificate is in, before the client has sent any application data (so the caller
    can check the pin first). Reading 1 byte drives mbedtls's handshake; it yields no
    data since the server speaks only when asked."""
    ctx, chain = _mp_tls_context(ca_der, client)
    s = ctx.wrap_socket(sock, server_hostname=server_hostname, do_handshake_on_connect=False)
    while 0 not in chain:
        r = s.read(1)
        if r is None:
            await wait_io(sock)
        elif r == b"":
            s.close()
            raise OSError("connection closed during the TLS handshake")
        else:
            s.close()
            raise OSError("server spoke before the TLS handshake was done")
    _chained(s, chain, ca_der)
    return s, chain[0]


def _chained(s, chain, ca_der):
    """The server's chain, as mbedtls built it, must end in the configured CA (a certificate of
    another CA is refused even before its key meets the pins)."""
    ca = bytes(ca_der)
    for depth, cert in chain.items():
        if depth and cert == ca:
            return
    s.close()
    raise ValueError("the server's certificate is not from the configured CA")


def key_host(key):
    """The address part of an addr_key (either form): replies to requests that accept any
    source port (Canon's agent on UDP 47545 answers from a high port) match on it alone."""
    if isinstance(key, tuple):
        return key[0]
    return bytes(key[2:6])


def lan_tls_context():
    """TLS client context that does NOT verify the server: ONLY for reading printers' public
    status pages on the LAN (self-signed certificates; fleetbox.web). Never for the cloud."""
    if MICROPYTHON:
        import tls
        ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = tls.CERT_NONE
        return ctx
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def mount_lfs(dev, path, fresh=False):
    """MicroPython: mount the LittleFS2 partition dev at path, formatting it first when fresh
    (the updater's inactive slot). CPython has no vfs: the caller passes a directory there."""
    import vfs
    if fresh:
        vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), path)


def umount(path):
    import vfs
    vfs.umount(path)
