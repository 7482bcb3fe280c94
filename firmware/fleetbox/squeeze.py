"""Raw DEFLATE (RFC 1951) writer: LZ77 over a preset dictionary, fixed Huffman codes.

Neither the unix port nor the ESP32 build of MicroPython compiles `deflate.DeflateIO`'s
write side (MICROPY_PY_DEFLATE_COMPRESS is off below the "full features" ROM level), so
the box carries its own. Fixed codes (one block, BTYPE 01) cost ~12% against zlib's dynamic
ones on device records but need no frequency pass nor code tables in the heap. Any inflater
reads the output (zlib: wbits=-15, zdict=the same dictionary).

Memory: the input stays where the caller built it (dictionary bytes first, then the data);
the match finder holds two small tables (2 * (HASH_SIZE + WINDOW) bytes) and the output.
Work is done in slices (`step`) so an asyncio caller can yield between them.
"""
from array import array

WINDOW = 8192           # farthest match: device records of one batch repeat within a few KB
HASH_SIZE = 1024
CHAIN = 32              # candidates tried per position
MIN_MATCH = 3
MAX_MATCH = 258

_LBASE = (3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
          131, 163, 195, 227, 258)
_LEXT = b"\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01\x01\x01\x02\x02\x02\x02\x03\x03\x03\x03\x04\x04\x04\x04" \
        b"\x05\x05\x05\x05\x00"


def _reverse(code, n):
    r = 0
    for _ in range(n):
        r = (r << 1) | (code & 1)
        code >>= 1
    return r


def _len_index():
    idx = bytearray(MAX_MATCH + 1)
    i = 0
    for n in range(MIN_MATCH, MAX_MATCH + 1):
        while i + 1 < len(_LBASE) and _LBASE[i + 1] <= n:
            i += 1
        idx[n] = i
    return idx


_LIDX = _len_index()


def _lit_code(sym):
    """(bit-reversed code, bits) of a literal/length symbol in the fixed code (RFC 1951 3.2.6)."""
    if sym < 144:
        return _reverse(0x30 + sym, 8), 8
    if sym < 256:
        return _reverse(0x190 + sym - 144, 9), 9
    if sym < 280:
        return _reverse(sym - 256, 7), 7
    return _reverse(0xC0 + sym - 280, 8), 8


class Deflater:
    """Compresses buf[start:] with buf[:start] as the preset dictionary."""

    def __init__(self, buf, start):
        self.buf = buf
        self.pos = start
        self.out = bytearray()
        self._bits = 0
        self._nbits = 0
        self.head = array("H", bytes(2 * HASH_SIZE))   # hash -> last position (mod 2^16)
        self.prev = array("H", bytes(2 * WINDOW))      # position mod WINDOW -> distance to the one before
        codes = array("H", bytes(2 * 288))
        lens = bytearray(288)
        for s in range(288):
            codes[s], lens[s] = _lit_code(s)
        self._codes, self._lens = codes, lens
        self._put(3, 3)   # BFINAL=1, BTYPE=01: one final block, fixed codes
        for p in range(max(0, start - WINDOW), start):
            self._insert(p)

    def _put(self, value, n):
        bits = self._bits | (value << self._nbits)
        n += self._nbits
        out = self.out
        while n >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            n -= 8
        self._bits, self._nbits = bits, n

    def _hash(self, p):
        b = self.buf
        return ((b[p] << 7) ^ (b[p + 1] << 4) ^ b[p + 2]) & (HASH_SIZE - 1)

    def _insert(self, p):
        if p + MIN_MATCH > len(self.buf):
            return
        h = self._hash(p)
        d = (p - self.head[h]) & 0xFFFF
        self.prev[p & (WINDOW - 1)] = d if d < WINDOW else 0
        self.head[h] = p & 0xFFFF

    def _longest(self, p):
        """(length, distance) of the longest earlier match at p, length 0 when none of 3+."""
        b = self.buf
        limit = len(b) - p
        if limit < MIN_MATCH:
            return 0, 0
        if limit > MAX_MATCH:
            limit = MAX_MATCH
        best, best_d = MIN_MATCH - 1, 0
        d = (p - self.head[self._hash(p)]) & 0xFFFF
        tries = CHAIN
        while tries and 0 < d < WINDOW and d <= p:
            c = p - d
            if b[c + best] == b[p + best]:
                n = 0
                while n < limit and b[c + n] == b[p + n]:
                    n += 1
                if n > best:
                    best, best_d = n, d
                    if n == limit:
                        break
            step = self.prev[c & (WINDOW - 1)]
            if not step:
                break
            d += step
            tries -= 1
        return (best, best_d) if best_d else (0, 0)

    def _literal(self, byte):
        self._put(self._codes[byte], self._lens[byte])

    def _match(self, n, d):
        i = _LIDX[n]
        sym = 257 + i
        self._put(self._codes[sym], self._lens[sym])
        if _LEXT[i]:
            self._put(n - _LBASE[i], _LEXT[i])
        d -= 1   # distance codes (RFC 1951 3.2.5): 0-3 plain, then two codes per power of two
        if d < 4:
            self._put(_reverse(d, 5), 5)
            return
        nb = 0
        while (d >> nb) > 1:
            nb += 1
        extra = nb - 1
        self._put(_reverse(2 * nb + ((d >> extra) & 1), 5), 5)
        self._put(d & ((1 << extra) - 1), extra)

    def step(self, budget=1024):
        """Compress about `budget` more input bytes; True once the stream is complete."""
        b = self.buf
        end = len(b)
        stop = min(end, self.pos + budget)
        p = self.pos
        while p < stop:
            n, d = self._longest(p)
            if n:
                # one step of lazy matching: a longer match at p+1 is worth a literal here
                self._insert(p)
                first = p + 1
                n2, d2 = self._longest(p + 1) if p + 1 < end else (0, 0)
                if n2 > n:
                    self._literal(b[p])
                    p += 1
                    n, d = n2, d2
                self._match(n, d)
                for q in range(first, p + n):
                    self._insert(q)
                p += n
            else:
                self._literal(b[p])
                self._insert(p)
                p += 1
        self.pos = p
        if p < end:
            return False
        self._put(self._codes[256], self._lens[256])   # end of block
        if self._nbits:
            self._put(0, 8 - self._nbits)
        return True


def compress(buf, start=0):
    """The raw DEFLATE stream of buf[start:], buf[:start] the preset dictionary."""
    z = Deflater(buf, start)
    while not z.step(4096):
        pass
    return z.out
