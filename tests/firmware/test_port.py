from check import tmp
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


def test_remove_tree_tries_everything_then_raises_the_first_failure():
    import os
    from check import fresh_dir, raises, rmtree
    d = fresh_dir(tmp("fbx-test-remove-tree"))
    os.mkdir(d + "/sub")
    for p in ("/a", "/b", "/sub/c", "/sub/d"):
        with open(d + p, "w") as f:
            f.write("x")
    port.remove_tree(d + "/nothing-here")           # nothing there: nothing to do
    port.remove_tree(d + "/a")                      # a file is a tree of one
    refused = []

    def fault(op, path):
        if op == "remove" and path == d + "/sub/c":
            refused.append(path)
            return port.EIO
        return 0
    port.set_flash_fault(fault)
    try:
        e = raises(OSError, port.remove_tree, d)
    finally:
        port.set_flash_fault(None)
    assert e.args[0] == port.EIO and refused == [d + "/sub/c"]
    # the others went; the refused file and the folders above it stayed
    assert os.listdir(d) == ["sub"] and os.listdir(d + "/sub") == ["c"]
    port.remove_tree(d, keep=True)
    assert os.listdir(d) == []
    port.remove_tree(d)
    raises(OSError, os.stat, d)
    rmtree(d)
