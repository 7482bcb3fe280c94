"""Values from a printer's own web page, when SNMP lacks them (docs/profiles.md, "web").

Two jobs: `Extractor` applies a profile's page rules to a page fed in pieces (never the
whole page in memory: a window of a few hundred bytes is kept), and `fetch()` is a small
HTTP/1.1 GET client for the embedded web servers of printers on the LAN: plain HTTP or
HTTPS, chunked or not, bounded redirects to the same host, a cap on the bytes read and
a deadline for the whole fetch. Non-blocking (asyncio streams) on both runtimes.

TLS here does NOT verify the server (printers serve self-signed certificates): it only
reads public status pages on the LAN. The cloud uplink never uses it (fleetbox.https).
"""
import asyncio
import re

from fleetbox import port, records
from fleetbox.errors import FleetboxError

FIELDS = ("serial", "firmware", "model", "counters.total", "counters.mono", "counters.color",
          "counters.print", "counters.copy", "counters.scan", "counters.fax", "counters.a3",
          "counters.a4", "counters.duplex")
WITHIN = 300            # bytes looked at after a marker, unless the rule says
MAX_WITHIN = 2000
MAX_TEXT = 64           # a text value is cut at this many characters
MAX_BYTES = 262144      # bytes of page read at most (head and body; printer pages run to 100s of KB)
TIMEOUT_MS = 8000       # the whole fetch, redirects included
MAX_REDIRECTS = 3
CHUNK = 1024
ENTITIES = ((b"&nbsp;", b" "), (b"&#160;", b" "), (b"&#32;", b" "), (b"&amp;", b"&"),
            (b"\xc2\xa0", b" "), (b"\xa0", b" "))


_ASCII = getattr(re, "ASCII", 0)   # CPython: \w \d \s ASCII-only, as MicroPython's re


class WebError(FleetboxError):
    pass


# ---------------------------------------------------------------- rules
def clean(window):
    """Page bytes -> text: every tag becomes a line break, a few entities become what they
    mean, so "Total</td><td class="v2">12,345" reads "Total\\n\\n12,345". A window whose
    first `>` comes before any `<` starts inside a tag (a marker such as `id="x"`): the
    rest of that tag is skipped."""
    out = bytearray()
    gt, lt = window.find(b">"), window.find(b"<")
    in_tag = gt >= 0 and (lt < 0 or gt < lt)
    for b in window:
        if in_tag:
            if b == 62:         # >
                in_tag = False
            continue
        if b == 60:             # <
            in_tag = True
            out.append(10)
            continue
        out.append(b)
    s = bytes(out)
    for k, v in ENTITIES:
        if k in s:
            s = s.replace(k, v)
    return records.text(s) or ""


def first_integer(s):
    """The first integer of `s`: digits, with grouping marks (",", ".", "'", " ") allowed
    only before exactly three digits ("12,345" and "12.345" are 12345; "3.5" is 3)."""
    i, n = 0, len(s)
    while i < n and not ("0" <= s[i] <= "9"):
        i += 1
    if i == n:
        return None
    digits = ""
    while i < n:
        c = s[i]
        if "0" <= c <= "9":
            digits += c
            i += 1
        elif c in ",.' " and s[i + 1:i + 4].isdigit() and len(s[i + 1:i + 4]) == 3 and \
                not s[i + 4:i + 5].isdigit():
            i += 1
        else:
            break
    if len(digits) > 12:
        return None             # no printer prints a trillion pages: not a counter
    return int(digits)


def extract(rule, window, counter):
    """The value of one rule from the bytes after its marker, or None."""
    s = clean(window)
    if "re" in rule:
        m = (re.compile(rule["re"], _ASCII) if _ASCII else re.compile(rule["re"])).search(s)
        if not m:
            return None
        s = m.group(1) or ""
        if not counter:
            s = s.strip()
            return s[:MAX_TEXT] or None
    if counter:
        return first_integer(s)
    for line in s.split("\n"):
        line = " ".join(line.split())
        if line:
            return line[:MAX_TEXT]
    return None


class Extractor:
    """A page's rules applied to the page as it streams in. `fields`: {field: rule}; a rule
    is {"after": marker, "within": n, "re": pattern}, or {"sum": [rule, ...]} (a counter
    that is the sum of its parts, known only when every part is). Only the first occurrence
    of a marker counts; its value is taken once `within` bytes after it have arrived."""

    def __init__(self, fields):
        self.rules = []
        self.sums = []          # (field, [keys of its parts])
        self.parts = {}         # part key -> value
        for name in fields:
            rule = fields[name]
            if "sum" in rule:
                keys = []
                for i, part in enumerate(rule["sum"]):
                    keys.append("%s+%d" % (name, i))
                    self._add(keys[-1], part)
                self.sums.append((name, keys))
            else:
                self._add(name, rule)
        self.keep = max([len(m) + w for _, _, m, w in self.rules] or [0])
        self.buf = b""
        self.found = {}
        self.left = len(self.rules)
        self.done = {}

    def _add(self, key, rule):
        self.rules.append((key, rule, rule["after"].encode(), rule.get("within", WITHIN)))

    def complete(self):
        return self.left == 0

    def feed(self, data):
        buf = self.buf + data
        self._scan(buf, False)
        self.buf = buf[-self.keep:] if len(buf) > self.keep else buf

    def finish(self):
        """The page ended: judge the markers whose window the page's end cut short."""
        self._scan(self.buf, True)
        self.buf = b""

    def _scan(self, buf, final):
        for name, rule, marker, within in self.rules:
            if name in self.done:
                continue
            i = buf.find(marker)
            if i < 0:
                if final:
                    self.done[name] = True
                    self.left -= 1
                continue
            start = i + len(marker)
            if start + within > len(buf) and not final:
                continue
            self.done[name] = True
            self.left -= 1
            v = extract(rule, buf[start:start + within], name.startswith("counters."))
            if v is not None:
                if "+" in name:
                    self.parts[name] = v
                else:
                    self.found[name] = v
        for name, keys in self.sums:
            if name not in self.done and all(k in self.done for k in keys):
                self.done[name] = True
                if all(k in self.parts for k in keys):
                    self.found[name] = sum(self.parts[k] for k in keys)


# ---------------------------------------------------------------- HTTP client
class _Deadline:
    def __init__(self, ms):
        self.start = port.ticks_ms()
        self.ms = ms

    def left(self):
        """Milliseconds left; WebError when none."""
        left = self.ms - port.ticks_diff(port.ticks_ms(), self.start)
        if left <= 0:
            raise WebError("too slow: no complete page within %d ms" % self.ms)
        return left


class _Reader:
    """Bounded reads off an asyncio stream: every read within the deadline, at most `cap` bytes."""

    def __init__(self, stream, deadline, cap):
        self.stream = stream
        self.deadline = deadline
        self.cap = cap
        self.total = 0
        self.buf = b""

    async def more(self):
        left = self.deadline.left()
        if self.total >= self.cap:
            raise WebError("page larger than %d bytes" % self.cap)
        try:
            data = await asyncio.wait_for(self.stream.read(min(CHUNK, self.cap - self.total)), left / 1000)
        except asyncio.TimeoutError:
            raise WebError("too slow: no complete page within %d ms" % self.deadline.ms)
        if not data:
            return False
        self.total += len(data)
        self.buf += data
        return True

    async def line(self, limit=1024):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                out, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return out
            if len(self.buf) > limit:
                raise WebError("line of the answer longer than %d bytes" % limit)
            if not await self.more():
                raise WebError("connection closed inside the answer's head")

    async def take(self, n):
        """Up to n bytes (b"" at the end of the stream)."""
        if not self.buf and not await self.more():
            return b""
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def _split_location(loc, host, scheme, port_map):
    """(scheme, port, path) of a redirect: same host only, printable ASCII only (never a
    header smuggled into the next request)."""
    loc = loc.strip()
    if not loc or len(loc) > 300 or any(c <= " " or c > "~" for c in loc):
        raise WebError("unusable redirect %r" % loc[:80])
    if loc.startswith("/") and not loc.startswith("//"):     # "//host/x" names another host
        return scheme, None, loc
    for sch in ("http", "https"):
        if loc.startswith(sch + "://"):
            rest = loc[len(sch) + 3:]
            i = rest.find("/")
            hostport, path = (rest, "/") if i < 0 else (rest[:i], rest[i:])
            h, _, p = hostport.partition(":")
            if h.lower() != host.lower():
                raise WebError("redirect to another host (%s) refused" % h[:60])
            if p and not p.isdigit():
                raise WebError("bad port in redirect %r" % loc[:80])
            return sch, int(p) if p else None, path
    raise WebError("unusable redirect %r" % loc[:80])


def port_for(scheme, number, port_map):
    if number is None:
        number = 443 if scheme == "https" else 80
    return int(port_map.get(str(number), port_map.get(number, number))) if port_map else number


async def fetch(host, page, fields, port_map=None, cap=MAX_BYTES, timeout_ms=TIMEOUT_MS):
    """The values of `fields` ({field: rule}) on `page` ({"scheme", "path", "port"}) of the
    device at `host`: (found {field: value}, final url). WebError when the page could not
    be read; values whose window was fully read before a failure are kept in the error's
    `found` attribute."""
    ex = Extractor(fields)
    scheme, number, path = page["scheme"], page.get("port"), page["path"]
    p = port_for(scheme, number, port_map)
    deadline = _Deadline(timeout_ms)
    budget = [cap]
    try:
        for _ in range(MAX_REDIRECTS + 1):
            loc = await _get(host, scheme, p, path, ex, deadline, budget)
            if loc is None:
                return ex.found, "%s://%s:%d%s" % (scheme, host, p, path)
            relative = loc.strip().startswith("/")
            scheme, explicit, path = _split_location(loc, host, scheme, port_map)
            if explicit is not None:
                p = explicit
            elif not relative:
                p = port_for(scheme, None, port_map)
        raise WebError("more than %d redirects" % MAX_REDIRECTS)
    except WebError as e:
        e.found = ex.found
        raise
    except (OSError, EOFError, ValueError, asyncio.TimeoutError) as e:
        err = WebError("%s://%s:%d%s: %s %s" % (scheme, host, p, path, type(e).__name__, e))
        err.found = ex.found
        raise err


async def _get(host, scheme, p, path, ex, deadline, budget):
    """One GET: feeds the body to `ex`; returns a redirect's Location, or None when done."""
    ctx = port.lan_tls_context() if scheme == "https" else None
    left = deadline.left()
    try:
        if ctx is None:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, p), left / 1000)
        else:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, p, ssl=ctx), left / 1000)
    except asyncio.TimeoutError:
        raise WebError("no connection to %s:%d" % (host, p))
    try:
        hosthdr = host if p == (443 if scheme == "https" else 80) else "%s:%d" % (host, p)
        w.write(("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: fleetbox\r\nAccept: text/html,*/*\r\n"
                 "Accept-Encoding: identity\r\nConnection: close\r\n\r\n" % (path, hosthdr)).encode())
        await asyncio.wait_for(w.drain(), deadline.left() / 1000)
        rd = _Reader(r, deadline, budget[0])
        try:
            return await _response(rd, ex)
        finally:
            budget[0] -= rd.total
    finally:
        try:
            w.close()
            await asyncio.wait_for(w.wait_closed(), 1)
        except Exception:   # noqa: BLE001  closing a broken connection may fail in many ways
            pass


async def _response(rd, ex):
    status_line = await rd.line()
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise WebError("not an HTTP answer: %r" % status_line[:40])
    status = int(parts[1])
    length, chunked, location = None, False, None
    for _ in range(100):
        line = await rd.line()
        if line in (b"\r\n", b"\n"):
            break
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        v = v.strip()
        if k == b"content-length":
            if not v.isdigit():
                raise WebError("bad Content-Length %r" % v[:20])
            length = int(v)
        elif k == b"transfer-encoding":
            chunked = b"chunked" in v.lower()
        elif k == b"location":
            location = records.text(v)
    else:
        raise WebError("more than 100 header lines")
    if status in (301, 302, 303, 307, 308):
        if not location:
            raise WebError("HTTP %d without Location" % status)
        return location
    if status != 200:
        raise WebError("HTTP %d" % status)
    if chunked:
        while not ex.complete():
            size_line = await rd.line(80)
            size = size_line.split(b";")[0].strip()
            if not size or len(size) > 8:
                raise WebError("bad chunk size %r" % size_line[:20])
            try:
                n = int(size, 16)
            except ValueError:
                raise WebError("bad chunk size %r" % size_line[:20])
            if n == 0:
                ex.finish()
                return None
            while n > 0 and not ex.complete():
                data = await rd.take(n)
                if not data:
                    raise WebError("connection closed inside a chunk")
                n -= len(data)
                ex.feed(data)
            if n == 0:
                await rd.line(8)
        return None
    left = length
    while not ex.complete() and (left is None or left > 0):
        data = await rd.take(CHUNK if left is None else min(CHUNK, left))
        if not data:
            if left:
                raise WebError("connection closed %d bytes before the page's end" % left)
            break
        if left is not None:
            left -= len(data)
        ex.feed(data)
    ex.finish()
    return None
