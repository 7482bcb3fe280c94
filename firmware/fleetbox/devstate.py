"""Device memory: what the box remembers about each device between sweeps, bounded and small.

One JSON object on the data partition (`/data/devices.json`), one entry per device;
docs/collection.md "Device memory" is the schema (keys, meaning, bounds). The short keys
are kept on flash for size; code reads and writes them only through the methods below,
named for what the collector means by them.

Entries "@<address>" hold what belongs to an address (its credentials, its quiet
backoff, whether it is a printer, table row counts ...); the last counters live under
the device's serial (else its "@<address>"), so they follow the device to a new address.
"""
import json
import os

from fleetbox import port
from fleetbox.atomicfile import atomic_write
from fleetbox.records import COUNTER_KEYS

COUNTERS_KEPT = COUNTER_KEYS
QUIET_MAX = 8      # most sweeps a silent, once-seen device is left alone (doubling from 1)
XS_SKIP = 8        # sweeps that skip a profile's extra agent after it stayed silent
NP_SKIP = 15       # sweeps that take a device found not to be a printer at its word
WEB_FIELDS_MAX = 16
_COMPACT = (",", ":")   # json separators of an entry held in memory


class DeviceState:
    def __init__(self, path=None, max_devices=512):
        self.path = path
        self.max = max_devices
        self.devices = {}
        self.dirty = False
        if path:
            try:
                with port.open_read(path) as f:
                    data = json.load(f)
                if isinstance(data, dict):
                    # an entry that is not an object (a damaged file) is forgotten, not fatal
                    self.devices = {k: v for k, v in data.items() if isinstance(v, dict)}
            except OSError as e:
                if e.args[0] != port.ENOENT:
                    raise   # unread is not empty: starting empty would overwrite the file at the next save
            except ValueError:
                self.devices = {}

    # ------------------------------------------------------------------ storage
    # An entry is held as its JSON text once written (a dict as loaded until then): a
    # string costs the heap less than half what a dict of small objects does.
    def get(self, key):
        """The entry of `key` (a fresh dict: change it through update)."""
        d = self.devices.get(key)
        if isinstance(d, str):
            return json.loads(d)
        return d or {}

    def update(self, key, **fields):
        d = self.devices.get(key)
        if d is None:
            if len(self.devices) >= self.max:
                # Forget the device seen longest ago.
                old, when = None, 0
                for k in self.devices:
                    t = self.get(k).get("t", 0)
                    if old is None or t < when:
                        old, when = k, t
                del self.devices[old]
            d = {}
        elif isinstance(d, str):
            d = json.loads(d)
        d.update(fields)
        self.devices[key] = json.dumps(d, separators=_COMPACT)
        self.dirty = True

    def save(self):
        if not (self.path and self.dirty):
            return
        atomic_write(self.path, self._write)
        self.dirty = False

    def _write(self, f):
        # entry by entry, as held: never the whole file built in the heap
        f.write("{")
        sep = ""
        for k, v in self.devices.items():
            f.write(sep)
            f.write(json.dumps(k))
            f.write(":")
            if isinstance(v, str):
                f.write(v)
            else:
                json.dump(v, f)
            sep = ",\n"
        f.write("}")

    # ------------------------------------------------------------------ counters (by serial)
    def counters(self, key):
        """The counters last kept for `key` (serial, else "@<address>"), or None."""
        return self.get(key).get("c")

    def keep_counters(self, key, counters, now):
        c = {}
        for k in COUNTERS_KEPT:
            if k in counters:
                c[k] = counters[k]
        self.update(key, c=c, t=now or 0)

    def first_seen(self, key, now):
        """When the box first collected `key` (serial, else "@<address>"): kept once, as "f"."""
        f = self.get(key).get("f")
        if not isinstance(f, int):
            f = now
            self.update(key, f=now)
        return f

    # ------------------------------------------------------------------ after a power cut
    def recall(self, rec):
        """Take back what `rec`, a record that reached flash, tells of its device, when the save at
        the end of the sweep that made it never came (a power cut mid-sweep; the spool recovered the
        record): when the box first collected the device (the cloud must not see it move later), that
        the address gave a record and answers (its silence is reported, not backed off), its counters
        when newer than those kept (the next reading is checked against them)."""
        host = rec.get("ip")
        if not isinstance(host, str):
            return
        key = rec.get("serial") or ("@" + host)
        first = rec.get("first_seen")
        if isinstance(first, int) and not isinstance(self.get(key).get("f"), int):
            self.update(key, f=first)
        self.answers_again(host)
        self.saw(host, rec.get("serial"), rec.get("mac"), (rec.get("status") or {}).get("power"))
        at, counters = rec.get("collected_at"), rec.get("counters")
        if isinstance(counters, dict) and isinstance(at, int) and at > self.get(key).get("t", 0):
            self.keep_counters(key, counters, at)

    # ------------------------------------------------------------------ credentials
    def preferred_credential(self, host):
        """Index of the discovery credential that answered last (tried first): 0 by default."""
        return self.get("@" + host).get("pc", 0)

    def prefer_credential(self, host, index):
        if self.preferred_credential(host) != index:
            self.update("@" + host, pc=index)

    def collect_credential(self, host):
        """Index of the collector's credential that answered first contact, or None."""
        return self.get("@" + host).get("cred")

    def keep_collect_credential(self, host, index):
        self.update("@" + host, cred=index)

    # ------------------------------------------------------------------ printer or not
    def not_a_printer_yet(self, host, sys_object_id):
        """True while a device found not to be a printer (and never seen as one) is taken
        at its word: NP_SKIP sweeps, as long as its sysObjectID stays the same. Counts one."""
        d = self.get("@" + host)
        if d.get("np") == sys_object_id and d.get("nps", 0) > 0 and not d.get("seen"):
            self.update("@" + host, nps=d["nps"] - 1)
            return True
        return False

    def not_a_printer(self, host, sys_object_id):
        """Found not to be a printer. A printer seen before that looks otherwise (booting)
        is not marked: it is checked again every sweep."""
        if not self.was_seen(host):
            self.update("@" + host, np=sys_object_id, nps=NP_SKIP)

    def a_printer(self, host):
        if self.get("@" + host).get("np"):
            self.update("@" + host, np=None, nps=0)

    def lacks_printer_mib(self, host):
        """A printer maker's agent without the Printer-MIB (found by its hrDevicePrinter)."""
        return bool(self.get("@" + host).get("nomib"))

    def keep_printer_mib(self, host, present):
        if self.lacks_printer_mib(host) != (not present):
            self.update("@" + host, nomib=not present or None)

    # ------------------------------------------------------------------ seen, quiet
    def was_seen(self, host):
        """The address gave a record before."""
        return bool(self.get("@" + host).get("seen"))

    def saw(self, host, serial, mac, power):
        """A record came from host: its identity, and its power state when the scan read it."""
        self.update("@" + host, seen=1, sr=serial, mc=mac, pw=power or self.get("@" + host).get("pw"))

    def last_identity(self, host):
        """(serial, MAC) of the last record from host (None where unknown)."""
        d = self.get("@" + host)
        return d.get("sr"), d.get("mc")

    def quiet(self, host):
        """True while a device that fell silent is left alone this sweep (counts one sweep)."""
        left = self.get("@" + host).get("qs", 0)
        if left > 0:
            self.update("@" + host, qs=left - 1)
            return True
        return False

    def fell_silent(self, host):
        """A device did not answer discovery. The first time after it was seen: its
        reachability ("asleep" if it was last seen asleep, else "unreachable"), and a backoff
        of 1 sweep starts; still silent: None, the backoff doubles up to QUIET_MAX. None for
        an address that never gave a record."""
        d = self.get("@" + host)
        if not d.get("seen"):
            return None
        q = d.get("q")
        if q:
            q = min(q * 2, QUIET_MAX)
            self.update("@" + host, q=q, qs=q)
            return None
        self.update("@" + host, q=1, qs=1)
        return "asleep" if d.get("pw") == "sleep" else "unreachable"

    def answers_again(self, host):
        """True (and the backoff is gone) when host was silent since it was seen."""
        if self.get("@" + host).get("q"):
            self.update("@" + host, q=None, qs=0)
            return True
        return False

    # ------------------------------------------------------------------ what to read
    def skip_extra_agent(self, host):
        """True while a profile's extra agent that stayed silent is not asked (counts one)."""
        left = self.get("@" + host).get("xs", 0)
        if left:
            self.update("@" + host, xs=left - 1)
            return True
        return False

    def extra_agent_silent(self, host):
        self.update("@" + host, xs=XS_SKIP)

    def rows(self, host):
        """{table name: row count} of the last scan (sizes the next GETBULKs)."""
        return self.get("@" + host).get("rows") or {}

    def keep_rows(self, host, rows):
        self.update("@" + host, rows=rows)

    def mfp_row(self, host):
        """hrDeviceTable row naming a scanner, fax or copier (0: none), None if never looked."""
        return self.get("@" + host).get("hrmfp")

    def keep_mfp_row(self, host, index):
        self.update("@" + host, hrmfp=index)

    def web_fields(self, host):
        """The fields the device's web pages gave before (None: never asked)."""
        return self.get("@" + host).get("wg")

    def keep_web_fields(self, host, names):
        """names: a set, kept sorted and bounded."""
        self.update("@" + host, wg=sorted(names)[:WEB_FIELDS_MAX])


class NoMemory(DeviceState):
    """No device memory (`fbtool scan`, tests): every question has its first-time answer."""

    def get(self, key):
        return {}

    def update(self, key, **fields):
        pass


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
        try:
            atomic_write(self._path(host, port), lambda f: json.dump(d, f))
        except OSError:
            pass
