"""The app's side of updates: takes the offer of an authenticated cloud answer, installs it
with fleetbox.updater into the other slot, reports to the update service, reboots into the
trial. Protocol: docs/update-protocol.md.

An offer is only a hint: the image it names is verified against the box's trust anchor
(/loader/root.fbr) and policy whatever the offer says, so a forged or replayed offer costs
a download at most. The offer is kept on flash until it is installed or refused, so a
reboot mid-download resumes (the updater's resume record says where).
"""
import json

from fleetbox import atomicfile, downlink, envelope, port

# fleetbox.updater and the verifiers are imported when an offer is acted on: a box that is
# not updating does not carry their bytecode in its heap.

ROOT_FILE = "/loader/root.fbr"
ROTATED_FILE = "/loader/rotated.fbr"   # the newest root rotation accepted (fleetbox.updroot.rotate)
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


# A malformed offer refuses the whole answer, as any other bad field does (docs/downlink.md).
downlink.register("offer", check_offer)


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
        if self.offer and self.offer.get("version") == version and self.offer.get("kind") == "app":
            # a power cut after the switch, before the offer was let go: this is its firmware running
            self._drop_offer()
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

    def _drop_offer(self):
        # quietly: an offer a flash fault left is acted on again (refused again, or the running firmware)
        atomicfile.remove_quietly(self.state_dir + "/" + OFFER_FILE)
        self.offer = None

    def _stage(self, name, info):
        # The staged record goes first: once the boot state names the slot the next boot may be its
        # trial, and the outcome (confirmed or reverted) is reported from this record.
        import bootstate
        self._write_staged(name, bootstate.Store(self.board.partition("bootstate")).load().seq)
        bootstate.set_pending(name, info, self.board.partition("bootstate"))

    def _write_staged(self, name, seq):
        # seq: the boot state's before the switch; a fall-back from the slot after it is a revert
        atomicfile.atomic_write(self.state_dir + "/" + STAGED_FILE, json.dumps(
            {"rollout": self.offer["rollout"], "image": self.offer["image"], "slot": name, "seq": seq}))

    def _installer(self):
        import bootstate      # on the loader partition
        from fleetbox import updater, updroot
        root = updroot.trusted_root(ROOT_FILE, ROTATED_FILE, lambda m: log(port.WARN, m))
        if self.offer.get("kind") == "pack" and self.packs is not None:
            return self.packs.installer(root, self.identity, self.state_dir, bootstate.LOADER_VERSION, self._floor(),
                                        self.offer["rollout"])
        other = bootstate.SLOTS[1 - bootstate.SLOTS.index(self.board.slot)]
        counter = bootstate.Store(self.board.partition("bootstate")).load().counter
        slot = updater.LfsSlot(other, self.board.partition(other), "/upd")
        return updater.Installer(root, self.identity, slot, self.state_dir, self.board.name, self.version, counter,
                                 bootstate.LOADER_VERSION, self._floor(),
                                 stage=self._stage)

    def run(self):
        """Install the offer (or resume it). Returns True when a slot is staged: reboot."""
        from fleetbox import updater, updimage
        offer = self.offer
        try:
            inst = self._installer()
        except (OSError, ImportError) as e:
            log(port.WARN, "updates off: no trust anchor or boot state (%r)" % e)
            self.enabled = False
            self._refuse(offer, "no_anchor", "no trust anchor or boot state: %r" % e)
            return False
        except updimage.UpdateError as e:
            log(port.ERROR, "updates off: trust anchor refused [%s]: %s" % (e.reason, e))
            self.enabled = False
            self._refuse(offer, e.reason, "trust anchor refused: %s" % e)
            return False
        conn = self.uplink._conn(self.uplink.active)
        try:
            report = self._rotate(inst, conn, offer) or inst.run(updater.RangeSource(conn, offer["url"]), offer,
                                                                 progress=lambda i, n: self.board.feed_watchdog())
        finally:
            conn.close()    # used blocking here: the uplink's next request opens it afresh, for asyncio
        report["rollout"] = offer["rollout"]
        if report["state"] == "staged" and getattr(inst.slot, "kind", "app") == "pack":
            report["state"] = "installed"       # in force from the next cycle, no reboot
        if report["state"] != "interrupted":
            self._drop_offer()
        self.send(report)
        return report["state"] == "staged"

    def _rotate(self, inst, conn, offer):
        """Walk the root rotation the offer names (`root`: the newest root version) before the
        install; None when there is none or it was accepted, else the refusal's report."""
        from fleetbox import https, updroot
        want = offer.get("root")
        if not isinstance(want, int) or isinstance(want, bool) or want <= inst.root.version:
            return None
        try:
            inst.root = updroot.rotate(inst.root, updroot.fetcher(conn), want, ROTATED_FILE, inst.min_time)
        except updroot.UpdateError as e:
            log(port.WARN, "root rotation to version %d refused [%s]: %s" % (want, e.reason, e))
            return {"image": offer.get("image"), "state": "refused", "reason": e.reason,
                    "detail": ("root rotation: %s" % e)[:200]}
        except (OSError, https.HttpError) as e:
            log(port.WARN, "root rotation interrupted: %r" % e)
            return {"image": offer.get("image"), "state": "interrupted", "detail": repr(e)[:200], "next_chunk": 0}
        log(port.INFO, "root rotated to version %d" % inst.root.version)
        return None

    def _refuse(self, offer, reason, detail):
        """The box cannot act on any offer: say so to the service, once per offer."""
        self._drop_offer()
        self.send({"rollout": offer["rollout"], "image": offer["image"], "state": "refused", "reason": reason,
                   "detail": detail[:200]})

    def after_cycle(self, trial_pending):
        """After each cycle: the outcome of a staged update, once known, to the service; packs
        that failed their check at load, as reverted."""
        while self.packs is not None and self.packs.problems:
            self.send(self.packs.problems.pop(0))
        staged = self._load(STAGED_FILE)
        if not staged or (self.board.slot == staged.get("slot") and trial_pending):
            return
        report = {"rollout": staged.get("rollout"), "image": staged.get("image"), "state": "confirmed"}
        if self.board.slot != staged.get("slot"):
            why = self._left(staged)
            if self.offer and self.offer.get("image") == staged.get("image") and why is None:
                return      # a cut before the boot state named the slot: the install resumes
            # the loader's reason, from the boot state: a crash loop, never confirmed, not runnable ...
            report.update(state="reverted", reason=why or "reverted",
                          detail="the loader left %s: %s" % (staged.get("slot"), why or "reverted"))
            if self.offer and self.offer.get("image") == staged.get("image"):
                self._drop_offer()
        log(port.INFO if report["state"] == "confirmed" else port.WARN, "update of rollout %s %s%s" % (
            staged.get("rollout"), report["state"], " [%s]" % report["reason"] if "reason" in report else ""))
        self.send(report)
        atomicfile.remove_quietly(self.state_dir + "/" + STAGED_FILE)

    def _left(self, staged):
        """Why the loader left the staged slot (bootstate.left: marked bad, or fallen back from since it
        was staged), or None; "unknown" when the boot state cannot be read."""
        try:
            import bootstate
            st = bootstate.Store(self.board.partition("bootstate")).load()
            idx = bootstate.SLOTS.index(staged["slot"])
        except (ImportError, OSError, ValueError, KeyError):
            return "unknown"
        if not hasattr(bootstate, "left"):      # a loader flashed before it: the fact, without the reason
            return "reverted" if st.bad & (1 << idx) or (st.reverted_from == idx and st.seq > staged.get("seq", -1)) \
                else None
        return bootstate.left(st, idx, staged.get("seq", -1))

    def send(self, report):
        """The report to the update service; lost when the service is down (progress is repeated)."""
        up = self.uplink
        from fleetbox import https
        try:
            body = report_envelope(up.key, up.kid, up.device_id, up._next_seq(), port.time_s(), report)
            conn = up._conn(up.active)
            try:
                status, _ = conn.request("POST", body, path="/v1/updates/report")
            finally:
                conn.close()    # blocking use: the uplink's asyncio requests need a connection of their own
            if status != 200:
                log(port.WARN, "update report refused: HTTP %d" % status)
        except (OSError, https.HttpError, ValueError) as e:
            log(port.WARN, "update report not sent: %r" % e)
