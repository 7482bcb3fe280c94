"""AES block encryption (FIPS 197) in pure Python, for key sizes the runtime lacks.

MicroPython's cryptolib takes 128- and 256-bit keys only; SNMPv3 AES-192 (CFB mode,
which needs only the forward cipher) falls back to this. Slow but small.
"""


def _sbox():
    box = bytearray(256)
    p = q = 1
    while True:
        # p * 3 and q / 3 in GF(2^8) walk every non-zero element
        p ^= ((p << 1) ^ (0x1B if p & 0x80 else 0)) & 0xFF
        q ^= q << 1
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        x = q ^ ((q << 1) | (q >> 7)) ^ ((q << 2) | (q >> 6)) ^ ((q << 3) | (q >> 5)) \
            ^ ((q << 4) | (q >> 4))
        box[p] = (x ^ 0x63) & 0xFF
        if p == 1:
            break
    box[0] = 0x63
    return bytes(box)


SBOX = _sbox()


def _xt(a):
    return ((a << 1) ^ 0x1B) & 0xFF if a & 0x80 else a << 1


def expand_key(key):
    """Round keys (a list of 16-byte lists) for a 16, 24 or 32 byte key."""
    nk = len(key) // 4
    if len(key) not in (16, 24, 32):
        raise ValueError("AES key must be 16, 24 or 32 bytes")
    rounds = nk + 6
    w = [list(key[4 * i:4 * i + 4]) for i in range(nk)]
    rcon = 1
    for i in range(nk, 4 * (rounds + 1)):
        t = list(w[i - 1])
        if i % nk == 0:
            t = [SBOX[t[1]] ^ rcon, SBOX[t[2]], SBOX[t[3]], SBOX[t[0]]]
            rcon = _xt(rcon)
        elif nk > 6 and i % nk == 4:
            t = [SBOX[b] for b in t]
        w.append([w[i - nk][j] ^ t[j] for j in range(4)])
    return [sum(w[4 * r:4 * r + 4], []) for r in range(rounds + 1)]


def encrypt_block(rk, block):
    s = [block[i] ^ rk[0][i] for i in range(16)]
    last = len(rk) - 1
    for r in range(1, last + 1):
        s = [SBOX[b] for b in s]
        # ShiftRows: state is column-major, s[4c + row]
        s = [s[(i + 4 * (i % 4)) % 16] for i in range(16)]
        if r != last:
            m = []
            for c in range(0, 16, 4):
                a0, a1, a2, a3 = s[c], s[c + 1], s[c + 2], s[c + 3]
                t = a0 ^ a1 ^ a2 ^ a3
                m.append(a0 ^ t ^ _xt(a0 ^ a1))
                m.append(a1 ^ t ^ _xt(a1 ^ a2))
                m.append(a2 ^ t ^ _xt(a2 ^ a3))
                m.append(a3 ^ t ^ _xt(a3 ^ a0))
            s = m
        k = rk[r]
        s = [s[i] ^ k[i] for i in range(16)]
    return bytes(s)


def encryptor(key):
    """A function block -> AES(key) of that 16-byte block."""
    rk = expand_key(bytes(key))

    def enc(block):
        return encrypt_block(rk, block)
    return enc
