"""What the box remembers about each device between scans, bounded and small.

Per device (keyed by serial, else address): the last counters (for the sanity check),
table row counts (so the next GETBULK asks for exactly that many rows), which
credential answered, and when it was last seen. Saved as JSON on the data partition.
"""
import json
import os

COUNTERS_KEPT = ("total", "mono", "color", "print", "copy", "scan", "fax", "duplex", "a3", "a4")


class DeviceState:
    def __init__(self, path=None, max_devices=512):
        self.path = path
        self.max = max_devices
        self.devices = {}
        self.dirty = False
        if path:
            try:
                with open(path) as f:
                    data = json.load(f)
                if isinstance(data, dict):
                    self.devices = data
            except (OSError, ValueError):
                self.devices = {}

    def get(self, key):
        return self.devices.get(key) or {}

    def update(self, key, **fields):
        d = self.devices.get(key)
        if d is None:
            if len(self.devices) >= self.max:
                # Forget the device seen longest ago.
                old = None
                for k, v in self.devices.items():
                    if old is None or v.get("t", 0) < self.devices[old].get("t", 0):
                        old = k
                del self.devices[old]
            d = self.devices[key] = {}
        d.update(fields)
        self.dirty = True

    def counters(self, key):
        return self.get(key).get("c")

    def keep_counters(self, key, counters, now):
        c = {}
        for k in COUNTERS_KEPT:
            if k in counters:
                c[k] = counters[k]
        self.update(key, c=c, t=now or 0)

    def save(self):
        if not (self.path and self.dirty):
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.devices, f)
        os.rename(tmp, self.path)
        self.dirty = False


class Statics:
    """Per device, one small JSON file on flash: the supplies' columns that rarely change
    (type, description, unit, max capacity, colorant) and the levels last read, so the
    next scans read only the levels. Read when that device is collected, never all at once.

    A cached entry is used at most `refresh` times; it is dropped when the rows differ or
    a level rose (a replaced cartridge may bring a new description or capacity).
    """

    def __init__(self, directory, refresh=12):
        self.dir = directory
        self.refresh = refresh
        try:
            os.mkdir(directory)
        except OSError:
            pass

    def _path(self, host, port):
        return "%s/%s_%d.json" % (self.dir, host, port)

    def load(self, host, port):
        try:
            with open(self._path(host, port)) as f:
                d = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(d, dict) or d.get("age", self.refresh) >= self.refresh:
            return None
        return d

    def save(self, host, port, rows, colorants, age):
        """rows: {index: {column: value}} with columns 5-9 (text already decoded)."""
        d = {"age": age, "rows": {}}
        for idx, r in rows.items():
            c = r.get(3)
            colour = c if isinstance(c, str) else colorants.get(c)
            d["rows"][str(idx)] = [r.get(5), r.get(6), r.get(7), r.get(8), colour, r.get(9)]
        tmp = self._path(host, port) + ".tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(d, f)
            os.rename(tmp, self._path(host, port))
        except OSError:
            pass
