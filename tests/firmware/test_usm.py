"""SNMPv3 USM: keys, ciphers, hashes and the client's v3 logic against an in-process agent.

Runs on CPython (pytest) and MicroPython (tests/mprun.py). Key vectors: RFC 3414 A.3
(MD5, SHA) and pysnmp 7.1's localkey/aes modules (SHA-2, AES-192/256 key extension).
"""
import asyncio

from fleetbox import aes, ber, sha2, snmp, usm
from fleetbox import port as fbport
from check import raises
from test_snmp import Agent, MIB, SYS

ENGINE = bytes.fromhex("000000000000000000000002")

# hash: (Ku("maplesyrup"), Kul for ENGINE)
KEYS = {
    "md5": ("9faf3283884e92834ebc9847d8edd963", "526f5eed9fcce26f8964c2930787d82b"),
    "sha1": ("9fb5cc0381497b3793528939ff788d5d79145211", "6695febc9288e36282235fc7151f128497b38f3f"),
    "sha224": ("282a5867ee9aac639ad59df9572c7d3ac0fbc13a905b6df07dbbf00b",
               "0bd8827c6e29f8065e08e09237f177e410f69b90e1782be682075674"),
    "sha256": ("ab51014d1e077f6017df2b12bee5f5aa72993177e9bb569c4dff5a4ca0b4afac",
               "8982e0e549e866db361a6b625d84cccc11162d453ee8ce3a6445c2d6776f0f8b"),
    "sha384": ("e06eccdf2c68a06ed034723c9c26e0db3b669e1e2efed49150b55377a2e98f38"
               "3c86fb836857444654b287c93f51ff64",
               "3b298f16164a11184279d5432bf169e2d2a48307de02b3d3f7e2b4f36eb6f045"
               "5a53689a3937eea07319a633d2ccba78"),
    "sha512": ("7e4396de5aadc77be853819b98c9406265b3a9c37cc3176569847a4e4f6fba63"
               "dd3a73d04924d31a63f95a601f9385af6be4ed1b37f87d040f7c6ed6f8d38a91",
               "22a5a36cedfcc085807a128d7bc6c2382167ad6c0dbc5fdff856740f3d84c099"
               "ad1ea87a8db096714d9788bd544047c9021e4229ce27e4c0a69250adfcffbb0b"),
}


def test_password_to_key_and_localisation_vectors():
    for name in sorted(KEYS):
        if fbport.MICROPYTHON and name in ("sha384", "sha512"):
            continue  # pure-Python SHA-512 hashes 1 MiB in ~10 s there; see test_sha2
        ku, kul = KEYS[name]
        k = usm.password_to_key(name, "maplesyrup")
        assert k.hex() == ku, name
        assert usm.localize_key(name, k, ENGINE).hex() == kul, name


def test_priv_key_extension_vectors():
    md5 = bytes.fromhex(KEYS["md5"][1])
    sha = bytes.fromhex(KEYS["sha1"][1])
    # net-snmp's AES-256/192 (pysnmp: AesBlumenthal256/192)
    assert usm.extend_priv_key("md5", md5, 32, "blumenthal", ENGINE).hex() == (
        "526f5eed9fcce26f8964c2930787d82bfa24a92467426c2f4b09192be10dfaec")
    assert usm.extend_priv_key("sha1", sha, 24, "blumenthal", ENGINE).hex() == (
        "6695febc9288e36282235fc7151f128497b38f3f505e07eb")
    # Cisco's (pysnmp: Aes256/Aes192, the Reeder 3DES draft's extension)
    assert usm.extend_priv_key("md5", md5, 32, "reeder", ENGINE).hex() == (
        "526f5eed9fcce26f8964c2930787d82b79eff44a90650ee0a3a40abfac5acc12")
    assert usm.extend_priv_key("sha1", sha, 24, "reeder", ENGINE).hex() == (
        "6695febc9288e36282235fc7151f128497b38f3f9b8b6d78")


def test_sha2_pure_python_digests():
    # FIPS 180-4 examples ("abc", and the 2-block messages)
    abc = {"sha224": "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7",
           "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
           "sha384": "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
                     "8086072ba1e7cc2358baeca134c825a7",
           "sha512": "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                     "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"}
    for name in sorted(abc):
        assert sha2.SHA2(name, b"abc").digest().hex() == abc[name], name
        h = sha2.SHA2(name)
        for c in b"abc":
            h.update(bytes((c,)))
        assert h.digest().hex() == abc[name], name
    m = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
    assert sha2.SHA2("sha224", m).digest().hex() == (
        "75388b16512776cc5dba5da1fd890150b0c6455cb4f58b1952522525")
    m = (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
         b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")
    assert sha2.SHA2("sha384", m).digest().hex() == (
        "09330c33f71147e83d192fc782cd1b4753111b173b3b05d22fa08086e3b0f712"
        "fcc7c71a557e2db966c3e9fa91746039")
    raises(ValueError, sha2.new, "nohash")


def test_hmac_rfc4231_vectors():
    key = b"\x0b" * 20
    assert usm.hmac("sha224", key, b"Hi There").hex() == (
        "896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22")
    assert usm.hmac("sha512", key, b"Hi There").hex() == (
        "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
        "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854")
    big = b"\xaa" * 131  # a key longer than the block is hashed first
    assert usm.hmac("sha384", big, b"Test Using Larger Than Block-Size Key - Hash Key First").hex() == (
        "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6"
        "0c2ef6ab4030fe8296248df163f44952")


def test_aes_block_and_cfb_vectors():
    pt = bytes.fromhex("00112233445566778899aabbccddeeff")  # FIPS 197 C.2
    k = bytes.fromhex("000102030405060708090a0b0c0d0e0f1011121314151617")
    assert aes.encryptor(k)(pt).hex() == "dda97ca4864cdfe06eaf70a0ec0d7191"
    # NIST SP 800-38A F.3.13 / F.3.15 / F.3.17 (CFB128), first two blocks, then a short tail
    iv = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    p = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
    for key, ct in (("2b7e151628aed2a6abf7158809cf4f3c",
                     "3b3fd92eb72dad20333449f8e83cfb4ac8a64537a0b3a93fcde3cdad9f1ce58b"),
                    ("8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
                     "cdc80d6fddf18cab34c25909c99a417467ce7f7f81173621961a2b70171d3d7a"),
                    ("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
                     "dc7e84bfda79164b7ecd8486985d386039ffed143b28b1c832113c6331e5407b")):
        key = bytes.fromhex(key)
        assert usm.aes_cfb(key, iv, p, False).hex() == ct
        assert usm.aes_cfb(key, iv, bytes.fromhex(ct), True) == p
        assert usm.aes_cfb(key, iv, p[:21], False).hex() == ct[:42]


def test_credential_errors_are_clear():
    e = raises(usm.UsmError, snmp.Credential.v3, "u", "SHA", "authpass1", "DES", "privpass1")
    assert "DES" in str(e)
    e = raises(usm.UsmError, snmp.Credential.v3, "u", "SHA1024", "authpass1")
    assert "SHA1024" in str(e) and "SHA512" in str(e)
    e = raises(usm.UsmError, snmp.Credential.v3, "u", "SHA", "short")
    assert "8 characters" in str(e)
    raises(usm.UsmError, snmp.Credential.v3, "u", None, None, "AES", "privpass1")
    raises(usm.UsmError, snmp.Credential.v3, "u" * 33)
    c = snmp.Credential.v3("u", "sha-256", "authpass1", "aes-128", "privpass1", "MFP")
    assert (c.version, c.user.auth, c.user.priv, c.user.level, c.context) == (
        "3", "SHA256", "AES", "authPriv", b"MFP")
    assert snmp.Credential.v2c("x").community == b"x" and snmp.Credential.v1().version == "1"


def test_message_round_trip_and_tamper_detection():
    u = usm.User("alice", "SHA256", "authpass1", "AES256", "privpass1")
    scoped = usm.encode_scoped(ENGINE, b"ctx", snmp.encode_pdu(ber.GET, 42, ["1.3.6.1.2.1.1.1.0"]))
    msg = usm.encode_message(7, 1400, u, ENGINE, 3, 1234, scoped, b"\x01" * 8)
    m = usm.decode_message(msg)
    assert (m.msg_id, m.max_size, m.flags, m.engine_id, m.boots, m.time, m.user) == (
        7, 1400, 7, ENGINE, 3, 1234, b"alice")
    assert len(m.auth_params) == 24 and m.priv_params == b"\x01" * 8 and m.scoped is None
    assert usm.verify(m, u)
    assert usm.decrypt(m, u) == scoped
    for i in (10, len(msg) // 2, len(msg) - 1):
        bad = bytearray(msg)
        bad[i] ^= 1
        try:
            assert not usm.verify(usm.decode_message(bytes(bad)), u)
        except ber.BERError:
            pass
    other = usm.User("alice", "SHA256", "authpass2", "AES256", "privpass1")
    assert not usm.verify(m, other)
    plain = usm.encode_message(8, 1400, usm.User("bob"), b"", 0, 0, scoped)
    m = usm.decode_message(plain)
    assert m.flags == 4 and m.auth_params == b"" and m.scoped is not None
    for junk in (b"", msg[:-1], msg + b"\x00", b"\x30\x03\x02\x01\x01"):
        raises(ber.BERError, usm.decode_message, junk)


# ------------------------------------------------------------ in-process v3 agent

class V3Agent(Agent):
    """The test Agent speaking SNMPv3 as an authoritative engine with users `users`."""

    def __init__(self, mib, users):
        Agent.__init__(self, mib)
        self.users = dict((u.name, u) for u in users)
        self.engine_id = bytes.fromhex("80001f8804666231")
        self.boots = 5
        self.clock = 1000
        self.reports = []
        self.bad_mac = 0          # send N replies with a broken MAC before the real one
        self.plain_reply = 0      # send N unauthenticated replies before the real one

    def _report(self, m, oid, user, flags, addr):
        self.reports.append(usm.REPORT_NAMES[oid])
        pdu = self._pdu(ber.REPORT, 0, [(oid, ber.encode_counter32(1))], 0, 0)
        scoped = usm.encode_scoped(self.engine_id, b"", pdu)
        u = user if user is not None else usm.User(m.user)
        msg = usm.encode_message(m.msg_id, 1500, u, self.engine_id, self.boots, self.clock,
                                 scoped, reportable=False, flags=flags)
        self.sock.sendto(msg, addr)

    def _pdu(self, pdu_type, rid, vbs, es, ei):
        full = snmp.encode_message("2c", b"", pdu_type, rid, vbs, es, ei)
        b = memoryview(full)
        t, s, e = ber.read_tlv(b, 0, len(b))
        t, s, e = ber.read_tlv(b, s, e)
        t, s, e = ber.read_tlv(b, e, len(b))
        t, s, e = ber.read_tlv(b, e, len(b))
        return bytes(b[s - ber.header_len(e - s):e])

    def _handle(self, data, addr):
        m = usm.decode_message(data)
        u = self.users.get(m.user)
        if not m.engine_id:
            return self._report(m, usm.UNKNOWN_ENGINE_ID, None, 0, addr)
        if u is None:
            return self._report(m, "1.3.6.1.6.3.15.1.1.3.0", None, 0, addr)
        if (m.flags & 3) != u.flags:
            return self._report(m, "1.3.6.1.6.3.15.1.1.1.0", None, 0, addr)
        if u.auth and not usm.verify(m, u):
            return self._report(m, "1.3.6.1.6.3.15.1.1.5.0", None, 0, addr)
        if u.auth and (m.boots != self.boots or abs(m.time - self.clock) > 150):
            return self._report(m, usm.NOT_IN_TIME_WINDOW, u, usm.FLAG_AUTH, addr)
        plain = usm.decrypt(m, u) if u.priv else m.data[m.scoped[0]:m.scoped[1]]
        b = memoryview(plain)
        _, ctx, ps, pe = usm.decode_scoped(b, 0, len(b))
        pdu_type, rid, es, ei, vbs = snmp.decode_pdu(b, ps, pe)
        req = snmp.Response("3", b"", pdu_type, rid, es, ei, vbs)
        self.requests.append((req, fbport.addr_key(addr)))
        if self.drop:
            self.drop -= 1
            return
        out, es, ei = self.answer(req)
        scoped = usm.encode_scoped(self.engine_id, ctx, self._pdu(ber.RESPONSE, rid, out, es, ei))
        salt = b"\x00\x00\x00\x00\x00\x00\x00\x09"
        reply = usm.encode_message(m.msg_id, 1500, u, self.engine_id, self.boots, self.clock,
                                   scoped, salt, reportable=False)
        while self.bad_mac:
            self.bad_mac -= 1
            bad = bytearray(reply)
            bad[usm.decode_message(reply).auth_at] ^= 0xFF
            self.sock.sendto(bytes(bad), addr)
        while self.plain_reply:
            self.plain_reply -= 1
            self.sock.sendto(usm.encode_message(m.msg_id, 1500, u, self.engine_id, self.boots,
                                                self.clock, self._plain(ctx, rid), flags=0), addr)
        self.sock.sendto(reply, addr)

    def _plain(self, ctx, rid):
        return usm.encode_scoped(self.engine_id, ctx, self._pdu(
            ber.RESPONSE, rid, [(SYS + ".5.0", ber.encode_octets(b"evil"))], 0, 0))


def run_v3(coro_fn, users, mib=MIB, **client_kw):
    async def main():
        agent = V3Agent(mib, users)
        agent.start()
        kw = {"timeout_ms": 300, "retries": 1}
        kw.update(client_kw)
        client = snmp.Client(**kw)
        try:
            return await coro_fn(client, agent)
        finally:
            client.close()
            await agent.stop()
            await asyncio.sleep(0)
    return asyncio.run(main())


MD5_AES = snmp.Credential.v3("alice", "MD5", "alice-auth", "AES", "alice-priv")
SHA_NOPRIV = snmp.Credential.v3("bob", "SHA", "bob-auth-pass")
NOAUTH = snmp.Credential.v3("carol")


def test_v3_get_walk_each_level():
    async def go(c, a):
        out = []
        for cred in (MD5_AES, SHA_NOPRIV, NOAUTH):
            out.append(await c.get("127.0.0.1", [SYS + ".5.0", SYS + ".9.0"], port=a.port, cred=cred))
            out.append(await c.walk("127.0.0.1", "1.3.6.1.2.1.43.11", port=a.port, cred=cred,
                                    max_repetitions=2))
        return out, c.stats, a.reports
    out, st, reports = run_v3(go, [MD5_AES.user, SHA_NOPRIV.user, NOAUTH.user])
    for i in range(0, 6, 2):
        assert out[i] == [(SYS + ".5.0", b"fb-test"), (SYS + ".9.0", ber.NO_SUCH_OBJECT)]
        assert [v for o, v in out[i + 1]] == [-3, 80, 55, 40, 1]
    assert st["discoveries"] == 1 and reports == ["unknownEngineIDs"]
    assert st["dropped"] == 0 and st["timeouts"] == 0


def test_v3_forged_replies_are_dropped():
    async def go(c, a):
        await c.get("127.0.0.1", [SYS + ".1.0"], port=a.port, cred=MD5_AES)
        a.bad_mac = 2
        a.plain_reply = 1
        a.hold = 0
        r = await c.get("127.0.0.1", [SYS + ".5.0"], port=a.port, cred=MD5_AES)
        await asyncio.sleep(0.02)
        return r, c.stats
    r, st = run_v3(go, [MD5_AES.user])
    assert r == [(SYS + ".5.0", b"fb-test")]
    assert st["auth_failures"] == 2 and st["dropped"] == 3


def test_v3_time_window_resync_after_agent_reboot():
    async def go(c, a):
        r1 = await c.get("127.0.0.1", [SYS + ".5.0"], port=a.port, cred=SHA_NOPRIV)
        a.boots += 1      # the agent rebooted: our boots/time are stale now
        a.clock = 3
        r2 = await c.get("127.0.0.1", [SYS + ".5.0"], port=a.port, cred=SHA_NOPRIV)
        a.clock = 2000    # its clock jumped ahead
        r3 = await c.get("127.0.0.1", [SYS + ".1.0"], port=a.port, cred=SHA_NOPRIV)
        return r1, r2, r3, c.stats, a.reports
    r1, r2, r3, st, reports = run_v3(go, [SHA_NOPRIV.user])
    assert r1 == r2 == [(SYS + ".5.0", b"fb-test")] and r3 == [(SYS + ".1.0", b"Fake printer")]
    assert reports == ["unknownEngineIDs", "notInTimeWindows", "notInTimeWindows"]
    assert st["discoveries"] == 1 and st["timeouts"] == 0


def test_v3_refusals_raise_named_errors():
    async def go(c, a):
        errs = []
        for cred in (snmp.Credential.v3("alice", "MD5", "wrong-pass", "AES", "alice-priv"),
                     snmp.Credential.v3("mallory", "SHA", "whatever-pass")):
            try:
                await c.get("127.0.0.1", [SYS + ".5.0"], port=a.port, cred=cred)
            except snmp.SnmpError as e:
                errs.append((e.name, str(e)))
        return errs
    errs = run_v3(go, [MD5_AES.user])
    assert [e[0] for e in errs] == ["wrongDigests", "unknownUserNames"]
    assert "alice" in errs[0][1] and "authPriv" in errs[0][1]


def test_v3_reply_over_the_receive_buffer_asks_for_fewer_rows():
    # 40 rows of ~620 octets, encrypted: a GETBULK of 32 or 16 of them outgrows the 8 KB buffer;
    # this agent (as some devices do) ignores msgMaxSize and sends it anyway
    col = "1.3.6.1.2.1.43.11.1.1.6.1."
    mib = {col + str(i): ber.encode_octets(b"%03d" % i + b"d" * 600) for i in range(1, 41)}

    async def go(c, a):
        from check import LogCapture
        with LogCapture(fbport.WARN) as log:
            rows = await c.walk("127.0.0.1", col[:-3], port=a.port, max_repetitions=32, cred=MD5_AES)
            got = await c.get("127.0.0.1", [col + str(i) for i in range(1, 21)], port=a.port, cred=MD5_AES)
        return rows, got, [q.error_index for q, k in a.requests if q.pdu_type == ber.GETBULK], \
            [len(q.varbinds) for q, k in a.requests if q.pdu_type == ber.GET], log.text(), c.stats
    rows, got, bulks, gets, log, st = run_v3(go, [MD5_AES.user], mib, bufsize=8192)
    assert [v[:3] for _, v in rows] == [b"%03d" % i for i in range(1, 41)], rows[-1]
    assert bulks[:3] == [32, 16, 8] and set(bulks[3:]) == {8}, bulks
    # a GET of 20 such cells is split in halves until each half fits
    assert [v[:3] for _, v in got] == [b"%03d" % i for i in range(1, 21)] and gets == [20, 10, 10], gets
    assert st["truncated"] == 3 and st["timeouts"] == 0 and st["retries"] == 0 and st["dropped"] == 0, st
    assert log.count("reply from 127.0.0.1 over 8192 bytes: asking for less") == 3, log


def test_v3_cut_reply_for_another_user_engine_or_request_is_dropped():
    scoped = usm.encode_scoped(b"\x80\x01", b"", V3Agent._pdu(None, ber.RESPONSE, 4242, [
        ("1.3.6.1.2.1.1.1.0", ber.encode_octets(b"x" * 900))], 0, 0))
    big = usm.encode_message(4242, 1500, MD5_AES.user, b"\x80\x01", 5, 1000, scoped, b"\x00" * 8,
                             reportable=False)
    assert usm.cut_head(big[:300]) == (4242, MD5_AES.user.flags, b"\x80\x01", b"alice")
    assert usm.cut_head(big[:40]) is None                      # not even the security parameters
    assert usm.cut_head(snmp.encode_message("2c", b"public", ber.RESPONSE, 4242, [])) is None

    async def go(c, a):
        await c.get("127.0.0.1", [SYS + ".5.0"], port=a.port, cred=MD5_AES)     # the engine is known
        eng = c._engines[fbport.addr_key(c._resolve("127.0.0.1", a.port))]
        out = []
        for user, engine_id in ((MD5_AES.user, b"\x80\x09"), (SHA_NOPRIV.user, eng.engine_id),
                                (MD5_AES.user, eng.engine_id)):
            p = snmp._Pending(fbport.addr_key(("127.0.0.1", a.port)), MD5_AES, 4242, eng)
            p.host = "127.0.0.1"
            c._pending[4242] = p
            cut = usm.encode_message(4242, 1500, user, engine_id, 5, 1000, scoped, b"\x00" * 8,
                                     reportable=False, flags=user.flags)[:300]
            c._too_big(cut, ("127.0.0.1", a.port))
            out.append(p.resp.error_status if p.resp else None)
            del c._pending[4242]
        return out, c.stats["dropped"]
    # another engine's, another user's: dropped; the request's own: tooBig
    assert run_v3(go, [MD5_AES.user]) == ([None, None, snmp.TOO_BIG], 2)


def test_master_keys_instead_of_passphrases():
    ku = bytes.fromhex(KEYS["sha1"][0])
    by_key = usm.User("u", "SHA", None, "AES", None, auth_ku=ku, priv_ku=ku)
    by_pass = usm.User("u", "SHA", "maplesyrup", "AES", "maplesyrup")
    assert by_key.keys(ENGINE) == by_pass.keys(ENGINE)
    assert by_key.keys(ENGINE)[0].hex() == KEYS["sha1"][1]
    e = raises(usm.UsmError, usm.User, "u", "SHA256", None, auth_ku=ku)
    assert "32 octets" in str(e)
    raises(usm.UsmError, usm.User, "u", "SHA", None, "AES", "privpass1", auth_ku=ku)
    c = snmp.Credential.v3("u", "SHA", None, None, None, b"", ku)
    assert c.user.keys(ENGINE)[0].hex() == KEYS["sha1"][1]
