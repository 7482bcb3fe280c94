"""Device memory: what the box remembers about each device between sweeps, bounded and small.

One JSON object on the data partition (`/data/devices.json`), one entry per device;
docs/collection.md "Device memory" is the schema (keys, meaning, bounds). The short keys
are kept on flash for size; code reads and writes them only through the methods below,
named for what the collector means by them. The file is read entry by entry and each entry
held as its compact JSON text, at most the board's `device_memory` of them: a full memory
must fit the heap of a board without PSRAM.

Entries "@<address>" hold what belongs to an address (its credentials, its quiet
backoff, whether it is a printer, table row counts ...); the last counters live under
the device's serial (else its "@<address>"), so they follow the device to a new address.
"""
import json
import os

from fleetbox import port
from fleetbox.port import const
from fleetbox.atomicfile import atomic_write
from fleetbox.records import COUNTER_KEYS

COUNTERS_KEPT = COUNTER_KEYS
QUIET_MAX = 8      # most sweeps a silent, once-seen device is left alone (doubling from 1)
XS_SKIP = 8        # sweeps that skip a profile's extra agent after it stayed silent
NP_SKIP = 15       # sweeps that take a device found not to be a printer at its word
WEB_FIELDS_MAX = 16
_COMPACT = (",", ":")   # json separators of an entry held in memory
DEVICES_MAX = 512  # entries, unless the board says otherwise (board.yaml device_memory)
ENTRY_MAX = 2048   # bytes of one entry's text as read (key and value): a longer one is dropped
_CHUNK = 256       # bytes read from the file at a time
_T_HEAD = '{"t":'  # an entry with a time holds it first (_held): eviction reads it without a parse

# _load's states (const: inlined as numbers, no names held) and the bytes it looks at
_OPEN = const(0)
_FIRST = const(1)
_KEY = const(2)
_COLON = const(3)
_VALSTART = const(4)
_VALUE = const(5)
_DONE = const(6)
_NEXT = const(7)
_KEYNEXT = const(8)
_END = const(9)
_QUOTE = const(0x22)
_BSL = const(0x5C)
_COMMA = const(0x2C)
_COLONCHAR = const(0x3A)
_LBRACE = const(0x7B)
_RBRACE = const(0x7D)
_LBRACKET = const(0x5B)
_RBRACKET = const(0x5D)
_BLANKS = b" \t\r\n"
_SPACE = const(0x20)
_SPACE_NEEDLESS = b"{[,: "   # a blank after these parts nothing


def _held(d):
    """The compact JSON text an entry is held as, its integer "t" first."""
    t = d.get("t")
    if type(t) is not int:
        return json.dumps(d, separators=_COMPACT)
    del d["t"]
    rest = json.dumps(d, separators=_COMPACT)
    return _T_HEAD + str(t) + ("," + rest[1:] if len(rest) > 2 else "}")


def _t(text):
    """The "t" of an entry's held text; 0 when it has none."""
    if not text.startswith(_T_HEAD):
        return 0
    end = text.find(",")
    return int(text[5:end if end > 0 else -1])


def _table(size):
    """An empty dict whose table already holds `size` keys: it never grows, so a full device
    memory needs no large block once the heap is cut up by the entries and a sweep."""
    d = {}
    for i in range(size):
        d[i] = None
    for i in range(size - 1, -1, -1):   # last first: each slot is left empty, not marked deleted
        del d[i]
    return d


class DeviceState:
    def __init__(self, path=None, max_devices=DEVICES_MAX):
        self.path = path
        self.max = max_devices
        self.devices = {}       # key -> the entry's compact JSON text (a string: less than half a dict's heap)
        self.dirty = False
        if path:
            self.devices = _table(max_devices)
            try:
                with port.open_read(path, binary=True) as f:
                    if not self._load(f):
                        # not a JSON object: every device gets its first-time treatment
                        self.devices = None     # (what was read goes before the new table is made)
                        self.devices = _table(max_devices)
            except OSError as e:
                if e.args[0] != port.ENOENT:
                    raise   # unread is not empty: starting empty would overwrite the file at the next save

    # ------------------------------------------------------------------ loading
    def _load(self, f):
        """Read the file's top-level object entry by entry, each value sliced out by its
        strings, escapes and nesting depth: the heap holds one entry's text (ENTRY_MAX) and a
        read buffer besides what is kept. False when the file is not one JSON object."""
        chunk = bytearray(_CHUNK)
        ent = bytearray(ENTRY_MAX)
        n = 0               # bytes of the entry (key and value; blanks outside strings left out or one kept)
        key_end = 0         # where the key's text ends in ent (and the value's begins)
        state = _OPEN
        depth = 0           # nesting depth inside the value
        in_str = esc = False
        over = False        # the entry outgrew ENTRY_MAX: read to its end, then dropped
        while True:
            got = f.readinto(chunk)
            if not got:
                return state == _END
            i = 0
            while i < got:
                b = chunk[i]
                i += 1
                if state == _VALUE or state == _KEY:
                    if in_str:
                        if esc:
                            esc = False
                        elif b == _BSL:
                            esc = True
                        elif b == _QUOTE:
                            in_str = False
                    elif b in _BLANKS:
                        if state == _VALUE and depth == 0:   # a number, true, false or null ended
                            state = _DONE
                        elif n and ent[n - 1] in _SPACE_NEEDLESS:
                            continue
                        else:
                            b = _SPACE      # one blank kept where it may part two tokens ("1 2")
                    elif b == _QUOTE:
                        in_str = True
                    elif b == _LBRACE or b == _LBRACKET:
                        depth += 1
                    elif b == _RBRACE or b == _RBRACKET:
                        if depth == 0:          # the scalar ended at the object's close
                            state = _DONE
                            i -= 1
                        else:
                            depth -= 1
                    elif b == _COMMA and depth == 0:
                        state = _DONE
                        i -= 1
                    if state != _DONE:
                        if n < ENTRY_MAX:
                            ent[n] = b
                            n += 1
                        else:
                            over = True
                        if not in_str and depth == 0:
                            if state == _KEY:
                                key_end, state = n, _COLON
                            elif b == _QUOTE or b == _RBRACE or b == _RBRACKET:
                                state = _DONE   # a string, object or array value closed
                    if state == _DONE:
                        if not self._keep(ent, n, key_end, over):
                            return False
                        n, over, state = 0, False, _NEXT
                    continue
                if b in _BLANKS:
                    continue
                if state == _VALSTART:
                    state = _VALUE
                    i -= 1          # the value's first byte, read again as part of it
                elif state == _COLON and b == _COLONCHAR:
                    state = _VALSTART
                elif (state == _FIRST or state == _KEYNEXT) and b == _QUOTE:
                    state, in_str = _KEY, True
                    ent[0] = b
                    n = 1
                elif state == _NEXT and b == _COMMA:
                    state = _KEYNEXT
                elif (state == _FIRST or state == _NEXT) and b == _RBRACE:
                    state = _END
                elif state == _OPEN and b == _LBRACE:
                    state = _FIRST
                else:
                    return False    # not JSON, or not an object (garbage after its end too)

    def _keep(self, ent, n, key_end, over):
        """Keep one entry read by _load; False when its text is not JSON (the file is damaged)."""
        if over:
            port.log("devstate", port.WARN, "device memory entry over %d bytes dropped" % ENTRY_MAX)
            return True
        try:
            key = json.loads(ent[:key_end])
            value = json.loads(ent[key_end:n])
        except ValueError:
            return False
        if isinstance(value, dict):     # an entry that is not an object (a damaged file) is forgotten
            self._put(key, _held(value), True)
        return True

    # ------------------------------------------------------------------ storage
    def get(self, key):
        """The entry of `key` (a fresh dict: change it through update)."""
        d = self.devices.get(key)
        return json.loads(d) if d else {}

    def update(self, key, **fields):
        d = self.get(key)
        d.update(fields)
        self._put(key, _held(d))
        self.dirty = True

    def _put(self, key, text, loading=False):
        if key not in self.devices and len(self.devices) >= self.max:
            old = self._oldest()
            if loading and _t(text) <= _t(self.devices[old]):
                return      # a file over the bound (a smaller one now) keeps its newest entries
            del self.devices[old]
        self.devices[key] = text

    def _oldest(self):
        """The key of the entry seen longest ago: the smallest "t" (0 for an entry without one),
        the first found of equals. Read from the text's head, no entry parsed."""
        old, when = None, 0
        for k, text in self.devices.items():
            t = _t(text)
            if old is None or t < when:
                old, when = k, t
                if t <= 0:      # nothing goes before an entry without a time
                    break
        return old

    def save(self):
        if not (self.path and self.dirty):
            return
        atomic_write(self.path, self._write)
        self.dirty = False

    def _write(self, f):
        # entry by entry, as held, one a line: never the whole file built in the heap
        f.write("{")
        sep = ""
        for k, v in self.devices.items():
            f.write(sep)
            f.write(json.dumps(k))
            f.write(":")
            f.write(v)
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
