"""fleetbox.keywrap: RFC 3394 (section 4 vectors) and RFC 5869 (appendix A) on both runtimes."""
from binascii import unhexlify

from check import raises
from fleetbox import keywrap
from vectors import expected

KEK128 = unhexlify("000102030405060708090A0B0C0D0E0F")
KEK256 = unhexlify("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
DATA128 = unhexlify("00112233445566778899AABBCCDDEEFF")
DATA256 = unhexlify("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")

# RFC 3394 sections 4.1, 4.3, 4.6 (MicroPython's AES has 128- and 256-bit keys only)
RFC3394 = [
    (KEK128, DATA128, "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"),
    (KEK256, DATA128, "64E8C3F9CE0F5BA263E9777905818A2A93C8191E7D6E8AE7"),
    (KEK256, DATA256, "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"),
]


def test_rfc3394_wrap_and_unwrap():
    for kek, data, wrapped in RFC3394:
        assert keywrap.wrap(kek, data) == unhexlify(wrapped)
        assert keywrap.unwrap(kek, unhexlify(wrapped)) == data


def test_unwrap_refuses_other_kek_and_altered_input():
    wrapped = unhexlify(RFC3394[2][2])
    raises(keywrap.UnwrapError, keywrap.unwrap, bytes(reversed(KEK256)), wrapped)
    for pos in (0, 8, len(wrapped) - 1):
        bad = bytearray(wrapped)
        bad[pos] ^= 0x80
        raises(keywrap.UnwrapError, keywrap.unwrap, KEK256, bytes(bad))
    raises(keywrap.UnwrapError, keywrap.unwrap, KEK256, wrapped[:-1])
    raises(keywrap.UnwrapError, keywrap.unwrap, KEK256, wrapped[:16])
    raises(ValueError, keywrap.wrap, KEK256, DATA128[:8])


def test_rfc5869_hkdf_sha256():
    ikm = b"\x0b" * 22
    okm = keywrap.hkdf_sha256(ikm, unhexlify("f0f1f2f3f4f5f6f7f8f9"), 42, unhexlify("000102030405060708090a0b0c"))
    assert okm == unhexlify("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
    okm = keywrap.hkdf_sha256(ikm, b"", 42)
    assert okm == unhexlify("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")


def test_update_vector_wrap():
    from fleetbox import updimage
    v = expected()
    kek = updimage.kek_for(v["identity"])
    assert kek == unhexlify(v["kek"])
    assert keywrap.wrap(kek, unhexlify(v["content_key"])) == unhexlify(v["wrapped"])
    assert keywrap.unwrap(kek, unhexlify(v["wrapped"])) == unhexlify(v["content_key"])
    raises(keywrap.UnwrapError, keywrap.unwrap, updimage.kek_for(v["other_box"]), unhexlify(v["wrapped"]))
