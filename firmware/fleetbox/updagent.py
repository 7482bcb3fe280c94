"""The app's side of updates: takes the offer of an authenticated cloud answer, installs it
with fleetbox.updater into the other slot, reports to the update service, reboots into the
trial. Protocol: docs/update-protocol.md.

An offer is only a hint: the image it names is verified against the box's trust anchor
(/loader/root.fbr) and policy whatever the offer says, so a forged or replayed offer costs
a download at most. The offer is kept on flash until it is installed or refused, so a
reboot mid-download resumes (the updater's resume record says where).
"""
import json

from fleetbox import atomicfile, envelope, port

# fleetbox.updater and the verifiers are imported when an offer is acted on: a box that is
# not updating does not carry their bytecode in its heap.

ROOT_FILE = "/loader/root.fbr"
OFFER_FILE = "update.offer"
STAGED_FILE = "update.staged"    # the rollout whose slot waits for its trial: confirmed or reverted
FLOOR_FILE = "update.floor"
CT_UPDATE_REPORT = 3
MAX_TEXT = 256
MAX_WRAP = 1024


def log(level, msg):
    port.log("update", level, msg)


def check_offer(v):
    """The `offer` field of a cloud answer (docs/downlink.md registry): shape and bounds."""
    if not isinstance(v, dict):
        return False
    for name, kind, bound in (("rollout", int, 1 << 62), ("image", str, 64), ("url", str, MAX_TEXT),
                              ("size", int, 1 << 30), ("version", str, 20), ("kind", str, 16),
                              ("wrap", str, MAX_WRAP)):
        x = v.get(name)
        if not isinstance(x, kind) or isinstance(x, bool):
            return False
        if (len(x) if kind is str else x) > bound or (kind is int and x < 0):
            return False
    return len(v["image"]) == 64 and v["url"].startswith("/")


def report_envelope(key, kid, device_id, seq, ts, report):
    """A progress report as an `up` envelope of content type 3 (JSON plaintext)."""
    return envelope.seal(key, kid, device_id, seq, ts, json.dumps(report).encode(), CT_UPDATE_REPORT)


class Agent:
    def __init__(self, board, identity, uplink, version, packs=None):
        self.board = board
        self.packs = packs      # fleetbox.pack.Packs: where pack offers install
        self.identity = identity
        self.uplink = uplink
        self.version = version
        self.state_dir = board.data_dir
        self.offer = self._load(OFFER_FILE)
        self.enabled = True
        uplink.on_offer = self.take

    def _load(self, name):
        try:
            with open(self.state_dir + "/" + name) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def take(self, offer):
        """Called with the `offer` of an authenticated answer."""
        if not check_offer(offer):
            log(port.WARN, "offer ignored: not a valid offer")
            return
        if self.offer and self.offer.get("image") == offer["image"]:
            return
        if offer["version"] == self.version and offer["kind"] == "app":
            return      # running it already (a late offer after the switch)
        log(port.INFO, "offer: %s %s (rollout %d)" % (offer["kind"], offer["version"], offer["rollout"]))
        atomicfile.atomic_write(self.state_dir + "/" + OFFER_FILE, json.dumps(offer))
        self.offer = offer

    def due(self):
        return self.enabled and self.offer is not None

    def _floor(self):
        floor = self._load(FLOOR_FILE) or 0
        t = self.uplink.stats.get("cloud_time")
        return max(floor, t or 0)

    def _installer(self):
        import bootstate      # on the loader partition
        from fleetbox import updater, updimage
        with open(ROOT_FILE, "rb") as f:
            root = updimage.load_root(f.read())
        if self.offer.get("kind") == "pack" and self.packs is not None:
            return self.packs.installer(root, self.identity, self.state_dir, bootstate.LOADER_VERSION, self._floor(),
                                        self.offer["rollout"])
        other = bootstate.SLOTS[1 - bootstate.SLOTS.index(self.board.slot)]
        counter = bootstate.Store(self.board.partition("bootstate")).load().counter
        slot = updater.LfsSlot(other, self.board.partition(other), "/upd")
        return updater.Installer(root, self.identity, slot, self.state_dir, self.board.name, self.version, counter,
                                 bootstate.LOADER_VERSION, self._floor(),
                                 stage=lambda name, info: bootstate.set_pending(name, info,
                                                                                self.board.partition("bootstate")))

    def run(self):
        """Install the offer (or resume it). Returns True when a slot is staged: reboot."""
        from fleetbox import updater, updimage
        offer = self.offer
        try:
            inst = self._installer()
        except (OSError, ImportError) as e:
            log(port.WARN, "updates off: no trust anchor or boot state (%r)" % e)
            self.enabled = False
            return False
        except updimage.UpdateError as e:
            log(port.ERROR, "updates off: trust anchor refused [%s]: %s" % (e.reason, e))
            self.enabled = False
            return False
        conn = self.uplink._conn(self.uplink.active)
        report = inst.run(updater.RangeSource(conn, offer["url"]), offer,
                          progress=lambda i, n: self.board.feed_watchdog())
        report["rollout"] = offer["rollout"]
        if report["state"] == "staged" and getattr(inst.slot, "kind", "app") == "pack":
            report["state"] = "installed"       # in force from the next cycle, no reboot
        if report["state"] == "staged":
            atomicfile.atomic_write(self.state_dir + "/" + STAGED_FILE, json.dumps(
                {"rollout": offer["rollout"], "image": offer["image"], "slot": inst.slot.name}))
        if report["state"] != "interrupted":
            atomicfile.remove_quietly(self.state_dir + "/" + OFFER_FILE)
            self.offer = None
        self.send(report)
        return report["state"] == "staged"

    def after_cycle(self, trial_pending):
        """After each cycle: the outcome of a staged update, once known, to the service; packs
        that failed their check at load, as reverted."""
        while self.packs is not None and self.packs.problems:
            self.send(self.packs.problems.pop(0))
        staged = self._load(STAGED_FILE)
        if not staged or (self.board.slot == staged.get("slot") and trial_pending):
            return
        state = "confirmed" if self.board.slot == staged.get("slot") else "reverted"
        log(port.INFO if state == "confirmed" else port.WARN,
            "update of rollout %s %s" % (staged.get("rollout"), state))
        self.send({"rollout": staged.get("rollout"), "image": staged.get("image"), "state": state})
        atomicfile.remove_quietly(self.state_dir + "/" + STAGED_FILE)

    def send(self, report):
        """The report to the update service; lost when the service is down (progress is repeated)."""
        up = self.uplink
        from fleetbox import https
        try:
            body = report_envelope(up.key, up.kid, up.device_id, up._next_seq(), port.time_s(), report)
            status, _ = up._conn(up.active).request("POST", body, path="/v1/updates/report")
            if status != 200:
                log(port.WARN, "update report refused: HTTP %d" % status)
        except (OSError, https.HttpError, ValueError) as e:
            log(port.WARN, "update report not sent: %r" % e)
