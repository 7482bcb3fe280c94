"""fleetbox.updimage: the box's verifier of update images and root metadata, against
docs/vectors/update/ and every refusal; on CPython and on MicroPython."""
import hashlib
from binascii import unhexlify

from check import raises
from fleetbox import updimage as u
from vectors import Reader, expected, load

V = expected()
IDENT = V["identity"]
NOW = V["created"] + 86400


def _root1():
    return u.load_root(load("root-1.fbr"), None, NOW)


def _root2():
    return u.load_root(load("root-2.fbr"), _root1(), NOW)


def _install(data, root=None, board="sim", identity=IDENT, wrap=None, **policy):
    out = []

    def sink(offset, chunk):
        out.append((offset, bytes(chunk)))
    if wrap is None:
        wrap = load("FBX-VECTOR-1.fbw")
    img = u.install(Reader(data), sink, root or _root1(), board, wrap=wrap, identity=identity, **policy)
    return img, out


def test_vector_installs_under_both_roots():
    payload = load("payload.bin")
    for root in (_root1(), _root2()):
        img, out = _install(load("image.fbu"), root, min_time=NOW, slot_size=1 << 20, loader_version=1,
                            check_version=u.no_rollback("1.1.9", 3))
        assert b"".join(c for _, c in out) == payload
        assert [o for o, _ in out] == [i * 1024 for i in range(5)]
        assert img.digest == unhexlify(V["image_digest"])
        assert img.head_size == V["head_size"]
        assert bytes(img.table) == b"".join(unhexlify(h) for h in V["chunk_sha256"])
        assert img.payload_sha256() == hashlib.sha256(payload).digest()
        assert img.manifest["version"] == "1.2.0" and img.manifest["security_counter"] == 3
        assert img.created == V["created"] and img.valid_signatures == 2


class _Stream:
    """A socket-like source: at most 300 bytes a read(), 700 a readinto()."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def read(self, n):
        b = self.data[self.pos:self.pos + min(n, 300)]
        self.pos += len(b)
        return b

    def readinto(self, buf):
        n = min(len(buf), 700, len(self.data) - self.pos)
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


def test_install_with_readinto():
    s = _Stream(load("image.fbu"))
    out = []
    u.install(s.read, lambda off, d: out.append(bytes(d)), _root1(), "sim", wrap=load("FBX-VECTOR-1.fbw"),
              identity=IDENT, readinto=s.readinto)
    assert b"".join(out) == load("payload.bin")
    s = _Stream(load("image.fbu")[:-10])
    raises(u.Truncated, u.install, s.read, lambda off, d: None, _root1(), "sim",
           content_key=unhexlify(V["content_key"]), readinto=s.readinto)


def test_root_rotation_chain_and_refusals():
    r1 = _root1()
    r2 = _root2()
    assert (r1.version, r2.version) == (1, 2)
    assert r1.digest == unhexlify(V["root_1_digest"])
    k1 = unhexlify(V["key_ids"]["k1"])
    assert k1 in r1.keys and k1 not in r2.keys                     # k1 revoked by the rotation
    # going back: root-1 presented as the successor of root-2 (k1 unknown, only k2 counts)
    e = raises(u.ThresholdNotMet, u.load_root, load("root-1.fbr"), r2, NOW)
    assert e.reason == "threshold"
    e = raises(u.RootRollback, u.load_root, load("root-2.fbr"), r2, NOW)   # replayed: not version 3
    assert e.reason == "root_version"
    e = raises(u.Expired, u.load_root, load("root-1.fbr"), None, V["expires"] + 1)
    assert e.reason == "expired"
    bad = bytearray(load("root-2.fbr"))
    bad[40] ^= 1
    raises(u.BadSignature, u.load_root, bytes(bad), r1, NOW)
    raises(u.Truncated, u.load_root, load("root-1.fbr")[:100], None, NOW)
    raises(u.BadFormat, u.load_root, load("root-1.fbr") + b"x", None, NOW)
    raises(u.BadFormat, u.load_root, load("image.fbu"), None, NOW)


def test_revoked_key_threshold_not_met():
    # signed by k1 + k2: fine under root 1, one valid signature of two under root 2
    _install(load("image-k1k2.fbu"), _root1())
    e = raises(u.ThresholdNotMet, _install, load("image-k1k2.fbu"), _root2())
    assert e.reason == "threshold"


def _sig_block_pos(data):
    m = int.from_bytes(data[8:12], "little")
    t = int.from_bytes(data[12:16], "little")
    return 16 + m + t


def test_unknown_keys_and_bad_signatures():
    data = bytearray(load("image.fbu"))
    pos = _sig_block_pos(data)
    unknown = bytearray(data)
    unknown[pos + 2] ^= 0xFF                                        # first signature's key id
    second = pos + 2 + 34 + int.from_bytes(bytes(data[pos + 2 + 32:pos + 2 + 34]), "little")
    unknown[second] ^= 0xFF
    e = raises(u.UnknownKey, _install, bytes(unknown))
    assert e.reason == "unknown_key"
    one_unknown = bytearray(data)
    one_unknown[second] ^= 0xFF
    raises(u.ThresholdNotMet, _install, bytes(one_unknown))
    forged = bytearray(data)
    forged[20] ^= 0x01                                              # a manifest byte
    e = raises(u.BadSignature, _install, bytes(forged))
    assert e.reason == "bad_signature"
    table = bytearray(data)
    table[pos - 1] ^= 0x01                                          # the chunk table is signed too
    raises(u.BadSignature, _install, bytes(table))


def test_policy_refusals():
    data = load("image.fbu")
    cases = [
        (u.WrongBoard, "wrong_board", {"board": "esp32-poe"}),
        (u.Expired, "expired", {"min_time": V["expires"] + 1}),
        (u.LoaderTooOld, "loader_too_old", {"loader_version": 0}),
        (u.TooBig, "too_big", {"slot_size": 4999}),
        (u.OlderVersion, "older_version", {"check_version": u.no_rollback("1.10.0", 0)}),
        (u.CounterRollback, "security_counter", {"check_version": u.no_rollback("1.0.0", 4)}),
    ]
    for exc, reason, policy in cases:
        e = raises(exc, _install, data, **policy)
        assert e.reason == reason and isinstance(e, u.UpdateError), (reason, e)
    _install(data, slot_size=5000, check_version=u.no_rollback("1.2.0", 3))


def test_signed_recovery_may_go_back_but_not_below_the_counter():
    check = u.no_rollback("2.0.0", 3)
    check({"version": "1.0.0", "security_counter": 3, "recovery": True})
    raises(u.OlderVersion, check, {"version": "1.0.0", "security_counter": 3, "recovery": False})
    raises(u.CounterRollback, check, {"version": "1.0.0", "security_counter": 2, "recovery": True})


def test_truncated_and_bit_flipped():
    data = load("image.fbu")
    for cut in (10, 200, V["head_size"] - 1, V["head_size"] + 1500, len(data) - 1):
        e = raises(u.Truncated, _install, data[:cut])
        assert e.reason == "truncated"
    raises(u.BadFormat, _install, data + b"\x00")
    flipped = bytearray(data)
    flipped[V["head_size"] + 2 * 1024 + 7] ^= 0x20                  # in chunk 2
    seen = []
    img = u.ImageReader(Reader(bytes(flipped)), _root1(), "sim")
    img.unwrap(load("FBX-VECTOR-1.fbw"), IDENT)
    sink = lambda off, d: seen.append(off)  # noqa: E731
    for i in range(2):
        img.feed(i, flipped[img.chunk_offset(i):img.chunk_offset(i) + img.chunk_len(i)], sink)
    e = raises(u.BadChunk, img.feed, 2, flipped[img.chunk_offset(2):img.chunk_offset(2) + 1024], sink)
    assert e.reason == "bad_chunk"
    assert seen == [0, 1024]                                        # never decrypted nor passed on
    raises(u.BadChunk, img.feed, 3, data[img.chunk_offset(3):img.chunk_offset(3) + 1024], sink)  # order


def test_wrapped_for_another_box():
    other = V["other_box"]
    e = raises(u.WrongBox, _install, load("image.fbu"), identity=other)
    assert e.reason == "wrong_box"
    # same serial and kid, another device key: RFC 3394's check fails
    impostor = {"serial": IDENT["serial"], "kid": 1, "device_key": other["device_key"]}
    raises(u.WrongBox, _install, load("image.fbu"), identity=impostor)
    img = u.ImageReader(Reader(load("image.fbu")), _root1(), "sim")
    e = raises(u.WrongKey, img.set_key, bytes(32))
    assert e.reason == "wrong_key"
    raises(u.WrongKey, img.start, 0)
    # a wrap made for this box but for another image
    wrap = load("FBX-VECTOR-1.fbw").replace(V["image_digest"].encode(), b"00" * 32)
    raises(u.WrongKey, img.unwrap, wrap, IDENT)


def test_resume_from_a_chunk():
    data = load("image.fbu")
    payload = load("payload.bin")
    for prev_kind in ("block", "chunk"):
        img = u.ImageReader(Reader(data), _root1(), "sim")
        img.set_key(unhexlify(V["content_key"]))
        prev = data[img.chunk_offset(2):img.chunk_offset(3)]
        img.start(3, prev[-16:] if prev_kind == "block" else prev)
        out = []

        def sink(off, d, out=out):
            out.append((off, bytes(d)))
        for i in (3, 4):
            img.feed(i, data[img.chunk_offset(i):img.chunk_offset(i) + img.chunk_len(i)], sink)
        assert out[0][0] == 3072 and b"".join(d for _, d in out) == payload[3072:]
        assert img.finish() is False                                # the caller checks the slot whole
    img = u.ImageReader(Reader(data), _root1(), "sim")
    img.set_key(unhexlify(V["content_key"]))
    bad = bytearray(data[img.chunk_offset(2):img.chunk_offset(3)])
    bad[0] ^= 1
    raises(u.BadChunk, img.start, 3, bytes(bad))
    raises(u.BadChunk, img.start, 3)
    raises(u.Truncated, img.finish)


def test_not_an_image():
    raises(u.BadFormat, _install, load("root-1.fbr"))
    data = bytearray(load("image.fbu"))
    data[4] = 3
    raises(u.BadFormat, _install, bytes(data))
