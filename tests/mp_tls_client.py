"""One HTTPS GET by the box's own client (fleetbox.https) on MicroPython, for the TLS-policy tests.

Usage: micropython tests/mp_tls_client.py REPO_ROOT CA_DER_PATH URL RESOLVE PIN_HEX[,PIN_HEX] sync|async
The box's clock says 0 (it has not learnt the time): the handshake must not care.
Prints one line: OK <status> or ERR <exception name> <message>.
"""
import sys

sys.path.insert(0, sys.argv[1] + "/firmware")

import asyncio  # noqa: E402
import binascii  # noqa: E402

from fleetbox import https, port  # noqa: E402

port.set_clock(lambda: 0)
with open(sys.argv[2], "rb") as f:
    ca = f.read()
url, resolve, mode = sys.argv[3], sys.argv[4], sys.argv[6]
pins = [binascii.unhexlify(p) for p in sys.argv[5].split(",")]
try:
    c = https.Connection(url, ca, pins, resolve, None, 5)
    if mode == "async":
        status, _ = asyncio.run(c.arequest("GET", b"", {"Connection": "close"}))
    else:
        status, _ = c.request("GET", b"", {"Connection": "close"})
    c.close()
    print("OK", status)
except Exception as e:
    print("ERR", type(e).__name__, str(e).strip())
