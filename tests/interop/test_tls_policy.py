"""The box's TLS policy on the real runtime (MicroPython's tls, mbedtls): what its ClientHello
offers, and what it checks of the cloud's certificate (docs/uplink.md, "TLS policy")."""
import os
import subprocess
import sys

import pytest

from simulator import pki
from tests import tls_peer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
HOST = "liberty.fleetbox.test"
ADDRESS = "127.77.60.1"
UNPACK = os.path.join(ROOT, "build", "qemu-x86_64", "unpack")


def _runtimes():
    """The venv's MicroPython (mbedtls 3.6, TLS 1.2) and, once `make sim-qemu` unpacked it, the
    QEMU appliance's (Debian's 1.25 on its system mbedtls, with TLS 1.3), run through its own loader."""
    out = {"venv": [MICROPYTHON]}
    libs = [os.path.join(UNPACK, p, "usr", "lib", "x86_64-linux-gnu")
            for p in ("libc6", "libffi8", "libmbedcrypto16", "libmbedtls21", "libmbedx509-7")]
    binary = os.path.join(UNPACK, "micropython", "usr", "bin", "micropython")
    if os.path.exists(binary) and all(os.path.isdir(d) for d in libs):
        out["appliance"] = [os.path.join(libs[0], "ld-linux-x86-64.so.2"), "--library-path", ":".join(libs), binary]
    return out


RUNTIMES = _runtimes()


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tls-policy"))
    ca = pki.ensure_ca(d)
    with open(os.path.join(d, "ca.der"), "wb") as f:
        f.write(pki.der(ca[1]))
    return d, ca


def box_get(pki_dir, port, pins, mode="sync", runtime="venv"):
    """The box's GET to liberty on port, as MicroPython runs it, with its clock at 0."""
    r = subprocess.run(RUNTIMES[runtime] + ["-X", "heapsize=1M", os.path.join(ROOT, "tests", "mp_tls_client.py"), ROOT,
                        os.path.join(pki_dir[0], "ca.der"), "https://%s:%d/v1/health" % (HOST, port), ADDRESS,
                        ",".join(pins), mode], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


def _server(pki_dir, stem, not_before_days, not_after_days, ca=None):
    d, our_ca = pki_dir
    cert, key = tls_peer.server_cert(d, stem, HOST, ADDRESS, ca or our_ca, tls_peer.days_from_now(not_before_days),
                                     tls_peer.days_from_now(not_after_days))
    return tls_peer.NoContentServer(ADDRESS, cert, key), pki.spki_pin(cert)


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_box_offers_only_ecdhe_with_aead(pki_dir, mode, runtime):
    rec = tls_peer.HelloRecorder(ADDRESS)
    try:
        assert box_get(pki_dir, rec.port, ["ab" * 32], mode, runtime).startswith("ERR")   # the recorder hangs up
    finally:
        rec.stop()
    suites = tls_peer.client_hello_suites(rec.hellos[0])
    offered = [s for s in suites if s not in tls_peer.SIGNALLING]
    assert offered and all(s in tls_peer.AEAD_ECDHE for s in offered), ["0x%04x" % s for s in offered]


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("validity", [(-730, -365), (365, 730), (-1, 30)],
                         ids=["expired-as-for-a-clock-a-year-ahead", "not-yet-valid-as-for-a-box-at-time-0",
                              "valid"])
def test_a_box_without_the_right_time_connects_to_its_pinned_cloud(pki_dir, validity, mode, runtime):
    srv, pin = _server(pki_dir, "dates%d%s%s" % (validity[0], mode, runtime), *validity)
    try:
        assert box_get(pki_dir, srv.port, ["00" * 32, pin], mode, runtime) == "OK 204"
        assert "matches no pin" in box_get(pki_dir, srv.port, ["00" * 32], mode, runtime)   # the pin is trusted
    finally:
        srv.stop()
    assert srv.served == 1


def test_a_pinned_key_under_another_ca_is_refused(pki_dir):
    other_ca = pki.ensure_ca(pki_dir[0], "other-ca", "Other CA")
    srv, pin = _server(pki_dir, "other", -1, 30, ca=other_ca)
    try:
        for mode in ("sync", "async"):
            assert "not from the configured CA" in box_get(pki_dir, srv.port, [pin], mode)
    finally:
        srv.stop()
    assert srv.served == 0
