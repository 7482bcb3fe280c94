from fleetbox import port


def test_hmac_sha256_rfc4231_case2():
    mac = port.hmac_digest(b"Jefe", b"what do ya want for nothing?")
    assert mac.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_aes256_cbc_fips197_vector():
    key = bytes(range(32))
    pt = bytes.fromhex("00112233445566778899aabbccddeeff")
    assert port.aes_ecb_encrypt(key, pt).hex() == "8ea2b7ca516745bfeafc49904b496089"
    iv = bytes(16)
    ct = port.aes_cbc_encrypt(key, iv, pt * 2)
    assert port.aes_cbc_decrypt(key, iv, ct) == pt * 2
    assert ct[:16].hex() == "8ea2b7ca516745bfeafc49904b496089"


def test_consteq():
    assert port.consteq(b"abc", b"abc")
    assert not port.consteq(b"abc", b"abd")
    assert not port.consteq(b"abc", b"ab")
