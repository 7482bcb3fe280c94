"""The rescue client: when no slot verifies, ask the rescue endpoint for a signed image and stage it.

It runs in the loader (boot.py calls fetch() from its rescue loop) and uses the app's own
code, whose copies `fbtool flash --root` puts on the loader partition: https (pinned TLS
with the box's factory client certificate), downlink (the answer is sealed under the box's
envelope key), updroot (root rotations) and updater (the streaming, resumable install into a
slot, verified whole against the trust anchor before it is staged). Nothing it receives is
believed before it verified: an image not signed under the box's root is refused like any
offer. Protocol: docs/update-protocol.md, "Rescue".
"""
import gc
import json

import bootstate
from fleetbox import atomicfile, downlink, https, port, updater, updimage, updroot

RESCUE_PATH = "/v1/rescue"
SETTINGS = "/loader/rescue.json"      # {"board", "retry_s"}, written by fbtool flash
IDENTITY = "/identity/identity.json"
KEYS = "/data/keys.json"              # the envelope key provisioning received
CONFIG = "/data/config.json"          # the last configuration: its endpoints and pins come first
DOWN_SEQ = "/data/downlink.seq"       # shared with provisioning and the uplink: one down seq per box
FLOOR = "/data/update.floor"          # the time floor and the staged rollout, as fleetbox.updagent keeps them
STAGED = "/data/update.staged"
ROOT_FILE = "/loader/root.fbr"
ROTATED_FILE = "/loader/rotated.fbr"   # the newest root rotation accepted (fleetbox.updroot.rotate)
TIMEOUT_S = 20
NO_VERSION = "0"      # nothing runs: any version may come, the security counter still holds
RETRY_S = 60
MAX_WAIT = 16         # the wait doubles after each failed attempt, up to 16 x retry_s

_refused = None       # the last attempt's refusal, told to the cloud with the next request
_failures = 0


class RescueError(updimage.UpdateError):
    reason = "rescue"


def _stage(rom, offer, slot, info, seq):
    """The staged record first, as fleetbox.updagent does: once the boot state names the slot the
    next boot is its trial, and the rescued firmware reports the outcome from this record."""
    atomicfile.atomic_write(STAGED, json.dumps({"rollout": offer["rollout"], "image": offer["image"],
                                                "slot": slot, "seq": seq}))
    bootstate.set_pending(slot, info, rom.partition("bootstate"))


def _reverted(st):
    """The staged image (rescued, or an update the app installed) whose slot the loader left: it
    crash-looped, never confirmed or would not run, as {"rollout", "image", "reason", "detail"};
    else None. No app runs to report it, so every request says it until a new image is staged
    (the staged record is replaced)."""
    staged = atomicfile.read_json(STAGED)
    if not staged or staged.get("slot") not in bootstate.SLOTS:
        return None
    why = bootstate.left(st, bootstate.SLOTS.index(staged["slot"]), staged.get("seq", -1))
    if why is None:
        return None
    return {"rollout": staged.get("rollout"), "image": staged.get("image"), "reason": why,
            "detail": "the loader left %s: %s" % (staged["slot"], why)}


def _floor():
    """The time floor the app keeps (an integer in JSON), else 0."""
    try:
        with open(FLOOR) as f:
            v = json.load(f)
        return v if isinstance(v, int) else 0
    except (OSError, ValueError):
        return 0


def _base(url):
    return url.rsplit("/v1/", 1)[0] if "/v1/" in url else url.rstrip("/")


def _rescue_first(endpoints):
    eps = [e for e in endpoints or () if isinstance(e, dict) and isinstance(e.get("url"), str)]
    return [e for e in eps if e.get("name") == "rescue"] + [e for e in eps if e.get("name") != "rescue"]


def targets(identity, cfg):
    """(url, ca DER, pins, resolve) to try in order: the last configuration's endpoints and trust,
    then the factory's; the endpoint named rescue before the others."""
    from binascii import a2b_base64, unhexlify
    trust = []
    if cfg and cfg.get("ca") and cfg.get("pins"):
        try:
            trust.append((a2b_base64(cfg["ca"]), [unhexlify(p) for p in cfg["pins"]]))
        except (ValueError, TypeError):
            pass
    factory = (a2b_base64(identity["ca"]), [unhexlify(p) for p in identity["pins"]])
    out = []
    for eps, sets in ((_rescue_first(cfg.get("endpoints") if cfg else None), trust + [factory]),
                      (_rescue_first(identity.get("provision")), [factory] + trust)):
        for ep in eps:
            for ca, pins in sets:
                t = (_base(ep["url"]) + RESCUE_PATH, ca, pins, ep.get("resolve"))
                if t not in out:
                    out.append(t)
    return out


def wait_s():
    """Seconds before the next attempt: rescue.json's retry_s, doubled for each failure in a row."""
    try:
        base = max(1, int((atomicfile.read_json(SETTINGS) or {}).get("retry_s", RETRY_S)))
    except (ValueError, TypeError):
        base = RETRY_S
    return base * min(MAX_WAIT, 1 << max(0, _failures - 1))


def _offer_ok(v):
    """The offer's shape (as fleetbox.updagent.check_offer); what it names is verified by the installer."""
    return isinstance(v, dict) and isinstance(v.get("rollout"), int) and isinstance(v.get("image"), str) and \
        len(v["image"]) == 64 and isinstance(v.get("url"), str) and v["url"].startswith("/") and \
        all(isinstance(v.get(k), str) for k in ("version", "kind", "wrap"))


def _ask(identity, keys, body, log):
    """(connection, answer fields) from the first endpoint that answers with a sealed offer, else None."""
    from binascii import a2b_base64, unhexlify
    client = (a2b_base64(identity["cert"]), a2b_base64(identity["key"]))
    key = unhexlify(keys["key"])
    down = downlink.DownState(DOWN_SEQ)
    for url, ca, pins, resolve in targets(identity, atomicfile.read_json(CONFIG)):
        conn = https.Connection(url, ca, pins, resolve, None, TIMEOUT_S, client)
        try:
            status, reply = conn.request("POST", body)
        except (OSError, https.HttpError, ValueError) as e:
            conn.close()
            log("rescue: %s: %s" % (url, e), "W")
            continue
        if status != 200:
            conn.close()
            try:
                reason = json.loads(reply).get("reason")
            except (ValueError, AttributeError):
                reason = None
            log("rescue: %s answered HTTP %d %s" % (url, status, reason or ""), "W")
            if status >= 500:
                continue
            return None       # the cloud has nothing for this box (or refuses it): wait and ask again
        try:
            fields = downlink.open_answer(key, keys["kid"], identity["serial"], reply, down, accept=False)
        except downlink.DownlinkError as e:
            conn.close()
            log("rescue: answer of %s refused: %s" % (url, e), "W")
            continue
        offer = fields.get("offer")
        if not _offer_ok(offer):
            conn.close()
            log("rescue: answer of %s holds no valid offer" % url, "W")
            continue
        down.remember(fields["_seq"])      # authentic and fresh: never accepted again
        return conn, fields
    return None


def attempt(rom, st, log):
    """One rescue attempt: (True, 0) when a slot is staged, else (False, seconds to wait). Never raises."""
    global _failures
    try:
        if _attempt(rom, st, log):
            _failures = 0
            return True, 0
    except Exception as e:  # noqa: BLE001  (a cut, a full flash, a bug: the next attempt starts afresh or resumes)
        log("rescue: attempt failed: %r" % e, "W")
    finally:
        gc.collect()
    _failures += 1
    wait = wait_s()
    log("rescue: next attempt in %d s" % wait)
    return False, wait


def _attempt(rom, st, log):
    """Ask, verify, install into a slot, stage it."""
    global _refused
    settings = atomicfile.read_json(SETTINGS) or {}
    identity = atomicfile.read_json(IDENTITY) or {}
    board = settings.get("board")
    if not board or "cert" not in identity:
        log("rescue: needs a factory identity with a client certificate and the board name; re-flash the box", "W")
        return False
    keys = atomicfile.read_json(KEYS)
    if not keys or not isinstance(keys.get("kid"), int) or not isinstance(keys.get("key"), str):
        log("rescue: no envelope key on the data partition (not provisioned, or reset): nothing can be opened", "W")
        return False
    port.secret(keys["key"])
    port.secret(identity.get("key"))
    root = updroot.trusted_root(ROOT_FILE, ROTATED_FILE, lambda m: log(m, "W"))
    req = {"serial": identity["serial"], "kid": keys["kid"], "board": board, "counter": st.counter,
           "root": root.version}
    if _refused is not None:
        req["refused"] = _refused
    reverted = _reverted(st)
    if reverted is not None:
        req["reverted"] = reverted
    got = _ask(identity, keys, json.dumps(req).encode(), log)
    if got is None:
        return False
    _refused = None
    conn, fields = got
    offer = fields["offer"]
    floor = max(_floor(), fields.get("time") or 0, fields["_ts"])
    log("rescue: offered %s %s (image %s)" % (offer["kind"], offer["version"], offer["image"][:16]))
    slot = bootstate.SLOTS[1 - st.active]
    try:
        try:
            want = offer.get("root")
            if isinstance(want, int) and not isinstance(want, bool) and want > root.version:
                root = updroot.rotate(root, updroot.fetcher(conn), want, ROTATED_FILE, floor)
                log("rescue: root rotated to version %d" % root.version)
            if offer["kind"] != "app":
                raise RescueError("a %r image cannot rescue a box" % offer["kind"])
            box = {"serial": identity["serial"], "kid": keys["kid"], "device_key": keys["key"]}
            inst = updater.Installer(root, box,
                                     updater.LfsSlot(slot, rom.partition(slot), "/upd"), "/data", board, NO_VERSION,
                                     st.counter, bootstate.LOADER_VERSION, floor,
                                     stage=lambda name, info: _stage(rom, offer, name, info, st.seq))
            info = inst.install(updater.RangeSource(conn, offer["url"]), offer)
        except updimage.UpdateError as e:
            _refused = {"rollout": offer["rollout"], "image": offer["image"], "reason": e.reason,
                        "detail": str(e)[:200]}
            atomicfile.remove_quietly("/data/update.resume")    # a refused image is never resumed
            log("rescue: image refused [%s]: %s" % (e.reason, e), "W")
            return False
    finally:
        conn.close()
    log("rescue: %s %s staged in %s" % (offer["kind"], info["version"], slot))
    return True
