"""The application: one asyncio loop that collects, spools and uploads on a schedule."""
import asyncio
import json

from fleetbox import config, devstate, health, pack, port, provision, snmp, targets, updagent, uplink
from fleetbox import spool as spool_mod
from fleetbox.batchfile import BatchFile
from fleetbox.spool import Spool
from fleetbox.sweep import SweepOptions, sweep
from fleetbox.version import VERSION  # noqa: F401  (the loader prints it)

# -- trial boot (docs/flash-layout.md, "Boot state"): bootstate lives on the loader partition
try:
    from bootstate import Trial
except ImportError:     # run without the loader (CPython unit tests): no trial to confirm
    Trial = None
# -- end trial boot

LED_UNPROVISIONED = "unprovisioned"
BATCH_RECORDS = 8
FAILED_CYCLE_WAIT_S = 60   # before the next try when a cycle failed before anything was scheduled
RECHECK_AFTER_FAILURE_MS = 60000
EX_CONFIG = 78      # run()'s result when the box cannot start (sysexits.h: configuration error)


def log(level, msg):
    port.log("main", level, msg)


class App:
    def __init__(self, board, cfg, identity, box_health=None, prov=None):
        self.board = board
        self.cfg = cfg
        self.devices = devstate.DeviceState(board.data_dir + "/devices.json", board.device_memory)
        # the spool adopts what a cut left staged; device memory takes those records back at once:
        # a start that fails after this point and is tried again would not find them staged
        self.spool = Spool(board.data_dir + "/spool", cfg["spool_max"], cfg.get("spool_max_bytes"))
        if self.spool.recovered is not None:
            self._recall(self.spool.recovered)
        self.uplink = uplink.Uplink(cfg, identity, board.data_dir)
        self.health_running = box_health is not None
        self.health = box_health or health.Health(board)
        self.uplink.on_time = self.health.cloud_time    # only sealed answers set the clock (docs/downlink.md)
        if prov:
            self.uplink.down = prov.down    # one down seq for every sealed answer
        self.prov = prov            # provisioning: configuration checks (None: a factory-seeded config)
        self.next_check = port.ticks_ms() + cfg["config_check_s"] * 1000
        self.cycle = 0
        self.stage = None       # the cycle's step under way, named when it fails
        self.failed = False     # a step of this cycle failed (the LED shows it until a clean cycle)
        # Vendor profiles: a signed pack that verifies wins over the firmware's own copy.
        self.packs = pack.Packs(board.data_dir)
        self.profiles = self.packs.load()
        # offers ride the upload answers
        self.updates = updagent.Agent(board, identity, self.uplink, VERSION, self.packs)
        self.statics = devstate.Statics(board.data_dir + "/statics")

    def _recall(self, ident):
        """Device memory as the recovered batch's records left it: the sweep that made them was cut
        before its save (docs/uplink.md "Batch files"). Record by record, as the spool checked them;
        a failure costs only the memory's update."""
        try:
            with port.open_read(self.spool.path_of(ident)) as f:
                spool_mod.staged_records(f, self.devices.recall)
            self.devices.save()
        except Exception as e:  # noqa: BLE001  (the batch itself is safe in the spool; the box starts)
            log(port.WARN, "device memory not updated from recovered batch %d: %r" % (ident, e))

    def _head(self, scan, started):
        head = {"scan": scan, "cycle": started}
        errors = self.health.counters()
        if errors:
            head["h"] = errors
        return head

    def _spool(self, scan, started, records):
        # JSON on flash: the uplink reads it back to send only what changed (fleetbox.delta).
        klass = spool_mod.scan_class(scan)
        stage, self.stage = self.stage, "spool"
        evicted = self.spool.evicted
        try:
            if isinstance(records, BatchFile):  # records already on flash, as they came: renamed in
                n = records.count - records.lost
                ident = records.finish(self.spool, klass)
            else:
                n = len(records)
                batch = self._head(scan, started)
                batch["records"] = records
                ident = self.spool.put(lambda f: json.dump(batch, f), klass)
        finally:
            gone = self.spool.evicted - evicted
            if gone:
                # what the spool's order dropped to make room: the only readings the cloud will not get
                log(port.WARN, "spool full: evicted batches %s" % " ".join(
                    str(i) for i in self.spool.evicted_ids[-min(gone, 16):]))
        # one line per batch: what a soak's accounting (bench/chaos) holds the cloud's store against
        if ident is not None:
            log(port.INFO, "spooled batch %d: %s, cycle %d, %d records" % (ident, scan, started, n))
        self.stage = stage

    async def collect(self, scan="full"):
        """One sweep of the configured targets; records go to the spool in batches as they come."""
        cfg = self.cfg
        self.stage = "collect"
        started = port.time_s()
        # records go to flash as they come, each batch headed by its scan and cycle; what an
        # earlier sweep left staged (its rename refused) becomes a batch first, not overwritten
        if self.spool.adopt_staged() is None and port.exists(self.spool.staged):
            log(port.WARN, "staged records overwritten: the flash refused their batch twice")
        pending = BatchFile(self.spool.staged, lambda: self._head(scan, started))
        quiet = []      # markers of devices seen before and silent now (docs/collection.md)

        def on_record(rec):
            try:
                pending.add(rec)
                if pending.count >= BATCH_RECORDS:
                    self._spool(scan, started, pending)
            except Exception as e:  # noqa: BLE001  (raised here it would end a sweep worker)
                self.cycle_failed(e)    # the flash refused: this record is lost, the batch's others stay
                self.stage = "collect"

        client = snmp.Client(timeout_ms=cfg["timeout_ms"], retries=cfg["retries"])
        try:
            addrs = targets.expand(cfg["targets"], cfg["exclude"], cfg["snmp_port"])
            creds = config.credentials(cfg)
            opts = SweepOptions(scan=scan, creds=creds, profiles=self.profiles, state=self.devices,
                                statics=self.statics, workers=cfg["workers"], pace_ms=cfg["pace_ms"],
                                web_ports=cfg["web_ports"], on_unreachable=quiet.append, ping=cfg["ping"])
            probed, found = await sweep(client, addrs, on_record, opts)
        finally:
            client.close()
            try:
                self.devices.save()
            except OSError as e:
                log(port.WARN, "device state not saved: %s" % e)
        if pending.count:
            self._spool(scan, started, pending)
        if quiet:
            # an "alerts" batch: only the status travels, the device's other fields stay as last read
            self._spool("alerts", started, quiet)
        log(port.INFO, "cycle %d: %s scan probed %d addresses, found %d printers, spool holds %d"
            % (self.cycle, scan, probed, found, len(self.spool)))

    async def upload(self):
        if not self.health.link:
            return  # cable out: the batches wait in the spool
        if not self.uplink.due():
            return  # backing off after failed drains (docs/uplink.md)
        self.stage = "upload"
        try:
            n = await self.uplink.drain(self.spool)
            if n:
                via = self.uplink.stats["last_endpoint"]
                log(port.INFO, "uploaded %d batches via %s" % (n, via))
                self.health.delivered(via != self.cfg["endpoints"][0].get("name"))
        except uplink.UplinkError as e:
            log(port.WARN, "upload failed, %d batches kept: %s" % (len(self.spool), e))
            self.health.delivery_failed()
            if self.prov and port.ticks_diff(self.next_check, port.ticks_ms()) > RECHECK_AFTER_FAILURE_MS:
                # a rotated or revoked key shows at a check; soon, but not on every failed cycle
                self.next_check = port.ticks_ms() + RECHECK_AFTER_FAILURE_MS
        offer = self.uplink.stats.pop("config_offer", None)
        if self.prov and isinstance(offer, dict) and offer.get("v") != self.prov.state.get("version") and \
                offer.get("v") != (self.prov.state.get("refused") or {}).get("version"):
            self.next_check = port.ticks_ms()       # the answer said a newer configuration is there

    async def sync_config(self):
        """Ask the cloud for a newer configuration or key; a new one is in force from the next cycle."""
        self.next_check = port.ticks_ms() + self.cfg["config_check_s"] * 1000
        kid = self.prov.keys["kid"]
        try:
            result = await self.prov.check()
        except provision.Revoked:
            log(port.ERROR, "the cloud revoked this box: no more collection or uploads")
            self.health.set_revoked(True)
            self.uplink.close()
            return
        except provision.ProvisionError as e:
            log(port.WARN, "configuration check failed: %s" % e)
            return
        if result == "updated" or self.prov.keys["kid"] != kid:
            self.reconfigure(self.prov.cfg or self.cfg)

    def reconfigure(self, cfg):
        self.uplink.close()
        self.cfg = cfg
        self.uplink = uplink.Uplink(cfg, self.prov.identity(), self.board.data_dir)
        self.uplink.on_time = self.health.cloud_time
        self.uplink.down = self.prov.down
        self.spool.max_items, self.spool.max_bytes = cfg["spool_max"], cfg.get("spool_max_bytes")
        port.set_log_level(cfg["log_level"])

    async def wait(self, seconds):
        # The health task feeds the watchdog meanwhile; a button press ends the wait early.
        await self.health.sleep(seconds)

    async def main(self):
        if not self.health_running:
            asyncio.create_task(self.health.run())
        # -- trial boot: confirmed after cloud contact and one complete collection cycle
        trial = Trial(self.board.slot, log=lambda msg: log(port.INFO, msg)) if Trial else None
        due = {}   # scan kind -> ticks_ms when it is due; all are due at start
        while True:
            await self.health.network()  # no collection while the cable is out
            self.health.progress()
            if self.health.revoked:
                await self.wait(3600)
                await self.sync_config()
                continue
            intervals = self.cfg["intervals"] or {"full": 300}
            for k in list(due):
                if k not in intervals:
                    del due[k]
            self.cycle += 1
            self.failed = False
            try:
                reboot = await self.run_cycle(intervals, due, trial)
            except Exception as e:  # noqa: BLE001  (a cycle's failure is logged and counted; the loop goes on)
                reboot = False
                self.cycle_failed(e)
            if not self.failed:
                self.health.cycle_ok()
            if reboot:
                self.board.reboot()
            if self.prov and port.ticks_diff(port.ticks_ms(), self.next_check) >= 0:
                await self.sync_config()
            # -- updates: install an offer into the other slot, then reboot into its trial
            self.updates.after_cycle(bool(trial and trial.pending))
            if self.updates.due() and self.updates.run():
                self.board.reboot()
            if self.packs.changed:
                self.profiles = self.packs.load()   # a new pack: in force from the next cycle, no reboot
            port.collect()
            now = port.ticks_ms()
            wait = min(port.ticks_diff(due[k], now) for k in due) / 1000 if due else FAILED_CYCLE_WAIT_S
            await self.wait(max(1, wait))

    async def run_cycle(self, intervals, due, trial):
        """Collect what is due, then upload; True when the trial boot asks for a reboot."""
        self.stage = "schedule"
        now = port.ticks_ms()
        kinds = [k for k in config.SCAN_KINDS if k in intervals
                 and port.ticks_diff(now, due.get(k, now)) >= 0]
        if "full" in kinds:
            kinds = ["full"]   # a full scan reads what every other kind reads
        for kind in kinds:
            try:
                await self.collect(kind)
            except Exception as e:  # noqa: BLE001  (what is spooled still goes up: a full flash must not stop the drain)
                self.cycle_failed(e)
            # also after a failed collection: the next try waits its interval, no tight retry loop
            due[kind] = port.ticks_ms() + int(intervals[kind] * 1000)
        if "full" in kinds:
            for k in intervals:
                if k not in ("full", "discovery"):
                    due[k] = port.ticks_ms() + int(intervals[k] * 1000)
        await self.upload()
        if trial and trial.pending and kinds and not self.uplink.stats["sent"] and not len(self.spool):
            # A site without printers gives nothing to send, yet the trial needs cloud
            # contact: an empty batch is that contact (the cloud stores no record for it).
            self._spool(kinds[0], port.time_s(), [])
            await self.upload()
        self.stage = "trial"
        return bool(trial and trial.after_cycle(bool(kinds), self.uplink.stats["sent"] > 0))

    def cycle_failed(self, exc):
        self.failed = True
        stage = self.stage or "cycle"
        for line in health.traceback_lines(exc):
            log(port.ERROR, line)
        log(port.ERROR, "cycle %d failed at %s, going on: %r" % (self.cycle, stage, exc))
        self.health.cycle_failed(stage, exc)
        try:
            self.uplink.close()     # a half-done exchange must not be continued next cycle
        except Exception:  # noqa: BLE001
            pass


async def first_contact(prov, box_health):
    """A box without configuration asks the cloud until it is claimed and configured. It opens
    nothing, never halts, and backs off (bounded) while nobody has claimed it."""
    n = 0
    while True:
        await box_health.network()
        box_health.progress()
        try:
            result = await prov.check()
        except provision.Revoked:
            box_health.set_revoked(True)
            result = "revoked"
        except provision.ProvisionError as e:
            result = "unreachable"
            log(port.WARN, "provisioning: %s" % e)
        if result == "updated":
            box_health.set_revoked(False)
            return prov.cfg
        wait = provision.backoff_s(n)
        n += 1
        log(port.INFO, "provisioning: %s; asking again in %d s" % (
            {"unclaimed": "not claimed yet", "current": "claimed, no configuration yet",
             "refused": "configuration refused"}.get(result, result), wait))
        await box_health.sleep(wait)   # a button press asks again at once


async def start(box_health, build):
    """The app, built again with back-off until it builds. Whatever building it raises (a flash
    that fails listing the spool or reading device memory) is logged and counted ("start" in
    the uploaded counters) and nothing on flash is touched: a reset would meet the same fault,
    and starting empty would overwrite what could not be read. The health task feeds the
    watchdog meanwhile."""
    n = 0
    while True:
        box_health.progress()
        try:
            return build()
        except Exception as e:  # noqa: BLE001  (nothing a start raises may stop the box)
            for line in health.traceback_lines(e):
                log(port.ERROR, line)
            box_health.cycle_failed("start", e)
            wait = provision.backoff_s(n)
            n += 1
            log(port.ERROR, "cannot start, trying again in %d s: %r" % (wait, e))
            await box_health.sleep(wait)


async def _provisioned(board, prov, box_health):
    asyncio.create_task(box_health.run())
    cfg = prov.load()
    if cfg is None:
        box_health.set_provisioned(False)
        cfg = await first_contact(prov, box_health)
        box_health.set_provisioned(True)
    port.set_log_level(cfg["log_level"])
    log(port.INFO, "provisioned: configuration %d, %d target specs" % (prov.state["version"], len(cfg["targets"])))
    app = await start(box_health, lambda: App(board, cfg, prov.identity(), box_health, prov))
    await app.main()


async def _seeded(board, cfg, identity, box_health):
    asyncio.create_task(box_health.run())
    app = await start(box_health, lambda: App(board, cfg, identity, box_health))
    await app.main()


def run_provisioned(board, identity):
    """A box with a factory certificate: its configuration and keys come from the cloud."""
    port.set_clock(board.time)
    box_health = health.Health(board)
    try:
        prov = provision.Provisioner(identity, board.data_dir)
    except (KeyError, ValueError, TypeError) as e:
        log(port.ERROR, "factory identity unusable: %s" % e)
        board.led(LED_UNPROVISIONED)
        return EX_CONFIG

    def factory_reset():
        provision.factory_reset(board.data_dir)

    box_health.on_factory_reset = factory_reset
    log(port.INFO, "serial %s, factory identity" % identity.get("serial"))
    try:
        asyncio.run(_provisioned(board, prov, box_health))
    except Exception as e:  # noqa: BLE001  (whatever it was, the box must come back)
        box_health.fatal(e)


def run(board):
    try:
        identity = board.identity()
        if "cert" in identity:
            return run_provisioned(board, identity)
        cfg = config.load(board.data_dir + "/config.json")
    except (config.ConfigError, OSError, ValueError) as e:
        log(port.ERROR, "cannot start: %s" % e)
        board.led(LED_UNPROVISIONED)
        return EX_CONFIG
    port.set_log_level(cfg["log_level"])
    port.secret(identity.get("device_key"))
    log(port.INFO, "serial %s, %d target specs, endpoints %s" % (
        identity.get("serial"), len(cfg["targets"]), ", ".join(e.get("name", "?") for e in cfg["endpoints"])))
    port.set_clock(board.time)
    box_health = health.Health(board)
    try:
        asyncio.run(_seeded(board, cfg, identity, box_health))
    except Exception as e:  # noqa: BLE001  (whatever it was, the box must come back)
        box_health.fatal(e)
