"""The cloud service run on its own (`python -m cloud serve`) for tests and bench/cloud, and
boxes whose envelopes the firmware's own modules seal (on CPython).

    svc = Service(directory, database, workers=2).start()   # certificates, manifest, config
    svc.port["liberty"]; svc.logs() (its JSON log lines); svc.stop() -> exit status
"""
import json
import os
import secrets
import signal
import subprocess
import sys
import time

from simulator import pki

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIRMWARE = os.path.join(ROOT, "firmware")


class ServiceError(Exception):
    pass


class Service:
    def __init__(self, directory, database, workers=1, endpoints=None, log_level="info", limits=None,
                 pool_size=8, extra_toml=(), top_toml=(), client_ca=None, root=ROOT):
        self.root = root            # the checkout whose `cloud` package runs (bench/cloud: another commit's too)
        self.dir, self.database, self.workers = directory, database, workers
        self.endpoints = endpoints or {"liberty": "127.77.30.1", "rescue": "127.77.30.2"}
        self.log_level, self.limits, self.pool_size = log_level, limits or {}, pool_size
        self.extra_toml = list(extra_toml)      # lines after the listeners: tables such as [smtp]
        self.top_toml = list(top_toml)          # keys before the tables, such as factory_manifest
        self.client_ca = client_ca              # {listener name: CA PEM path}: asks for client certificates
        self.ca = pki.ensure_ca(directory)
        self.ca_der = pki.der(self.ca[1])
        self.manifest = os.path.join(directory, "manifest.json")
        if not os.path.exists(self.manifest):
            with open(self.manifest, "w") as f:
                json.dump({}, f)
        self.config = os.path.join(directory, "cloud.toml")
        self.log_path = os.path.join(directory, "cloud.log")
        self.proc = None
        self.port = {}

    def add_boxes(self, serials):
        """Factory identities for serials, added to the manifest: {serial: key bytes}."""
        keys = {s: secrets.token_bytes(32) for s in serials}
        with open(self.manifest) as f:
            m = json.load(f)
        m.update({s: {"1": k.hex()} for s, k in keys.items()})
        with open(self.manifest + ".tmp", "w") as f:
            json.dump(m, f)
        os.replace(self.manifest + ".tmp", self.manifest)
        return keys

    def write_config(self):
        lines = ['database = "%s"' % self.database, 'manifest = "manifest.json"', "workers = %d" % self.workers,
                 'log_level = "%s"' % self.log_level, "pool_size = %d" % self.pool_size] + self.top_toml + ["[limits]"]
        lines += ["%s = %s" % kv for kv in self.limits.items()]
        for name, address in self.endpoints.items():
            cert, key = pki.ensure_server(self.dir, name, "%s.fleetbox.test" % name, [address], self.ca)
            lines += ["[[listener]]", 'name = "%s"' % name, 'address = "%s"' % address, "port = 0",
                      'cert = "%s"' % os.path.basename(cert), 'key = "%s"' % os.path.basename(key)]
            if (self.client_ca or {}).get(name):
                lines.append('client_ca = "%s"' % self.client_ca[name])
        with open(self.config, "w") as f:
            f.write("\n".join(lines + self.extra_toml) + "\n")

    def start(self, timeout=60):
        self.write_config()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "cloud", "serve", "--config", self.config],
                                     stdout=self._log, stderr=self._log, cwd=self.root)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError("the service exited (%s):\n%s" % (self.proc.returncode, self.log_text()[-3000:]))
            self.port = {e["endpoint"]: e["port"] for e in self.logs() if e.get("event") == "listening"}
            started = sum(1 for e in self.logs() if e.get("event") == "worker-start")
            if len(self.port) == len(self.endpoints) and started >= self.workers:
                return self
            time.sleep(0.1)
        self.stop()
        raise ServiceError("the service did not start within %d s:\n%s" % (timeout, self.log_text()[-3000:]))

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def logs(self):
        """Every log line as a dict (ValueError on a line that is not one JSON object)."""
        return [json.loads(line) for line in self.log_text().splitlines() if line.strip()]

    def stop(self, timeout=30):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        code, self.proc = self.proc.returncode, None
        return code


def claim_boxes(store, keys):
    """The boxes of `keys` ({serial: envelope key}) claimed in `store`'s database, their keys (kid 1)
    held there: what zero-touch provisioned boxes are to the service."""
    from sqlalchemy import insert

    from cloud.provision_schema import provisioned
    with store.engine.begin() as c:
        c.execute(insert(provisioned), [{"serial": s, "cert": "-", "spki": "-", "claim_salt": "-", "claim_hash": "-",
                                         "state": "claimed", "kid": 1, "env_key": k.hex()} for s, k in keys.items()])


def _firmware():
    if FIRMWARE not in sys.path:
        sys.path.insert(0, FIRMWARE)
    from fleetbox import cbor, envelope
    return cbor, envelope


def printer_records(box_no, n=8, cycle=0, t0=None):
    """n printer records shaped like docs/device-record.md for one box's cycle."""
    t0 = int(time.time()) - 600 if t0 is None else t0
    out = []
    for i in range(n):
        out.append({"ip": "10.%d.%d.%d" % (box_no // 250 % 250, box_no % 250, 10 + i), "port": 161,
                    "serial": "B%05d-P%02d" % (box_no, i), "mac": "00:11:%02x:%02x:44:%02x" % (box_no >> 8 & 255,
                                                                                           box_no & 255, i),
                    "manufacturer": "HP", "model": "LaserJet M50%d" % (i % 10), "hostname": "prn%d" % i,
                    "sys_descr": "HP ETHERNET MULTI-ENVIRONMENT,ROM none,JETDIRECT,JD153",
                    "location": "floor %d" % i, "uptime_s": 86400 + cycle * 300, "collected_at": t0 + cycle * 300 + i,
                    "scan": "full", "snmp_version": "2c", "typology": "mfp", "technology": "laser",
                    "color": i % 2 == 0,
                    "counters": {"total": 10000 * i + 37 * cycle, "mono": 8000 * i + 30 * cycle, "color": 7 * cycle},
                    "supplies": [{"index": 1, "kind": "toner", "color": "black", "description": "Black Cartridge",
                                  "unit": "percent", "max": 100, "level": 90 - cycle, "percent": 90 - cycle,
                                  "state": "ok"}],
                    "status": {"device": "running", "printer": "idle", "errors": [], "display": ["Ready"],
                               "alerts": []}})
    return out


def seal_uploads(serial, key, box_no, uploads, records=8, first_seq=1, ts=None):
    """A box's envelopes for upload ids 1..uploads (8-record full scans, payload v1), sealed by
    the firmware's envelope module: what the box itself sends."""
    cbor, envelope = _firmware()
    ts = int(time.time()) if ts is None else ts
    out = []
    for u in range(1, uploads + 1):
        batch = {"scan": "full", "cycle": ts - 600 + u * 300, "records": printer_records(box_no, records, u)}
        plaintext = cbor.dumps({"v": 1, "upload": u}) + cbor.dumps(batch)
        out.append(envelope.seal(key, 1, serial, first_seq + u - 1, ts, plaintext))
    return out
