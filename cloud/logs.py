"""Structured logs: one JSON object per line on stderr.

Code logs through the standard `logging` module with `event(...)`: a readable message
plus named fields. In `fleetbox-cloud serve` every line is JSON
(`{"ts", "level", "logger", "pid", "msg", "event", ...fields}`); inside the simulator the
same records print as plain text under the simulator's own logging.
"""
import json
import logging
import os
import sys
import time

import orjson


def event(logger, level, name, msg, *args, **fields):
    """Log `msg % args` with event=name and the fields as structured data."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, *args, extra={"event": name, "fields": fields})


class JsonFormatter(logging.Formatter):
    def format(self, record):
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + ".%03dZ" % record.msecs,
               "level": record.levelname.lower(), "logger": record.name, "pid": os.getpid(),
               "msg": record.getMessage()}
        if getattr(record, "event", None):
            out["event"] = record.event
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        try:    # orjson: a line per upload at info, a third of json.dumps's time
            return orjson.dumps(out, default=str).decode()
        except TypeError:   # what orjson cannot write (an integer beyond 64 bits, a key not text)
            return json.dumps(out, default=str, separators=(",", ":"))


def setup(level="info", stream=None):
    """JSON lines for every logger (uvicorn's included) on stream (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("fleetbox.cloud.service").setLevel(logging.INFO)   # the service's life, always
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
