"""Zero-touch provisioning: power-on to first accepted upload, and the bytes provisioning costs.

A factory-fresh sim board boots against the simulated cloud; the dealer claims it as soon as it
has asked once (as if the code was typed in at that moment). Its provisioning endpoint resolves to
a TCP relay in front of liberty that counts every byte of each connection (TLS records, HTTP heads
and bodies: what the customer's network carries). Uploads go straight to the cloud.

    .venv/bin/python bench/provision/first_upload.py [RUNS]     (binds 127.77.60.x, ports 17443/17161)
"""
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
from simulator.runner import Simulation  # noqa: E402

RELAY = "127.77.60.9"


class Relay:
    """TCP relay: listen on (addr, port), forward to target; bytes per connection [up, down]."""

    def __init__(self, addr, port, target):
        self.target, self.conns = target, []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            b = socket.create_connection(self.target)
            counts = [0, 0]
            self.conns.append(counts)
            threading.Thread(target=self._pipe, args=(a, b, counts, 0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(b, a, counts, 1), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, counts, i):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                counts[i] += len(data)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.sock.close()


class BenchSim(Simulation):
    def factory(self):
        liberty = self.cloud.receivers["liberty"]
        self.relay = Relay(RELAY, liberty.port, (liberty.address, liberty.port))
        real = self.endpoints
        self.endpoints = {"liberty": (RELAY, real["liberty"][1]), "rescue": real["rescue"]}
        try:
            super().factory()
        finally:
            self.endpoints = real


def one(state):
    sim = BenchSim(state, snmp_port=17161, cloud_port=17443, interval=30, liberty="127.77.60.1",
                   rescue="127.77.60.2", echo=lambda s: None, web_ports={80: 17080, 443: 17444}, fresh=True)
    try:
        sim.start(claim=False)
        t0 = time.time()   # boot_box() has just powered the box on
        sim.wait_for("the first provisioning request", lambda: (sim.provisioning() or {}).get("last_contact"), 60)
        asked = len(sim.relay.conns)
        unclaimed = [sum(c) for c in sim.relay.conns[:asked]]
        sim.claim()
        sim.wait_for("the first accepted upload", lambda: sim.cloud.store.boxes(), 180)
        first_upload = time.time() - t0
        provisioned = [sum(c) for c in sim.relay.conns[asked:]]
        return first_upload, unclaimed, provisioned
    finally:
        sim.stop()
        if getattr(sim, "relay", None):
            sim.relay.close()


def main(runs):
    rows = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            rows.append(one(d))
    for i, (t, unclaimed, provisioned) in enumerate(rows, 1):
        print("run %d: power-on to first accepted upload %.1f s (claimed at the first ask); "
              "an unclaimed ask %d bytes; provisioning %d bytes in %d exchange(s)" % (
                  i, t, unclaimed[0] if unclaimed else 0, sum(provisioned), len(provisioned)))
    ts = sorted(r[0] for r in rows)
    print("median power-on to first accepted upload: %.1f s over %d run(s)" % (ts[len(ts) // 2], len(ts)))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1))
