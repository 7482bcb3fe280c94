"""The application: one asyncio loop that collects, spools and uploads on a schedule."""
import asyncio
import json

from fleetbox import config, devstate, health, port, profiles, snmp, targets, updagent, uplink
from fleetbox import spool as spool_mod
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
EX_CONFIG = 78      # run()'s result when the box cannot start (sysexits.h: configuration error)


def log(level, msg):
    port.log("main", level, msg)


class App:
    def __init__(self, board, cfg, identity):
        self.board = board
        self.cfg = cfg
        self.spool = Spool(board.data_dir + "/spool", cfg["spool_max"], cfg.get("spool_max_bytes"))
        self.uplink = uplink.Uplink(cfg, identity, board.data_dir)
        self.health = health.Health(board)
        self.uplink.on_time = self.health.cloud_time    # only sealed answers set the clock (docs/downlink.md)
        self.cycle = 0
        # Vendor profiles: an update on the data partition wins over the firmware's own copy.
        try:
            self.profiles = profiles.load([board.data_dir + "/profiles.json", "/app/profiles.json"])
        except profiles.ProfileError as e:
            log(port.WARN, "profiles unusable, standard MIBs only: %s" % e)
            self.profiles = []
        self.devices = devstate.DeviceState(board.data_dir + "/devices.json")
        self.updates = updagent.Agent(board, identity, self.uplink, VERSION)   # offers ride the upload answers
        self.statics = devstate.Statics(board.data_dir + "/statics")

    def _spool(self, scan, started, records):
        # JSON on flash: the uplink reads it back to send only what changed (fleetbox.delta).
        klass = {"counters": spool_mod.COUNTERS, "alerts": spool_mod.ALERTS}.get(scan, spool_mod.BULK)
        batch = {"scan": scan, "cycle": started, "records": records}
        self.spool.put(lambda f: json.dump(batch, f), klass)

    async def collect(self, scan="full"):
        """One sweep of the configured targets; records go to the spool in batches as they come."""
        cfg = self.cfg
        started = port.time_s()
        pending = []
        quiet = []      # markers of devices seen before and silent now (docs/collection.md)

        def on_record(rec):
            pending.append(rec)
            if len(pending) >= BATCH_RECORDS:
                self._spool(scan, started, pending[:])
                del pending[:]

        client = snmp.Client(timeout_ms=cfg["timeout_ms"], retries=cfg["retries"])
        try:
            addrs = targets.expand(cfg["targets"], cfg["exclude"], cfg["snmp_port"])
            creds = [snmp.Credential(cfg["snmp_version"], c) for c in cfg["communities"]]
            opts = SweepOptions(scan=scan, creds=creds, profiles=self.profiles, state=self.devices,
                                statics=self.statics, workers=cfg["workers"], pace_ms=cfg["pace_ms"],
                                web_ports=cfg["web_ports"], on_unreachable=quiet.append)
            probed, found = await sweep(client, addrs, on_record, opts)
        finally:
            client.close()
            try:
                self.devices.save()
            except OSError as e:
                log(port.WARN, "device state not saved: %s" % e)
        if pending:
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
        try:
            n = await self.uplink.drain(self.spool)
            if n:
                via = self.uplink.stats["last_endpoint"]
                log(port.INFO, "uploaded %d batches via %s" % (n, via))
                self.health.delivered(via != self.cfg["endpoints"][0].get("name"))
        except uplink.UplinkError as e:
            log(port.WARN, "upload failed, %d batches kept: %s" % (len(self.spool), e))
            self.health.delivery_failed()

    async def wait(self, seconds):
        # The health task feeds the watchdog meanwhile; a button press ends the wait early.
        await self.health.sleep(seconds)

    async def main(self):
        asyncio.create_task(self.health.run())
        # -- trial boot: confirmed after cloud contact and one complete collection cycle
        trial = Trial(self.board.slot, log=lambda msg: log(port.INFO, msg)) if Trial else None
        intervals = self.cfg["intervals"] or {"full": 300}
        due = {}   # scan kind -> ticks_ms when it is due; all are due at start
        while True:
            await self.health.network()  # no collection while the cable is out
            self.health.progress()
            self.cycle += 1
            now = port.ticks_ms()
            kinds = [k for k in config.SCAN_KINDS if k in intervals
                     and port.ticks_diff(now, due.get(k, now)) >= 0]
            if "full" in kinds:
                kinds = ["full"]   # a full scan reads what every other kind reads
            for kind in kinds:
                await self.collect(kind)
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
            if trial and trial.after_cycle(bool(kinds), self.uplink.stats["sent"] > 0):
                self.board.reboot()
            # -- updates: install an offer into the other slot, then reboot into its trial
            self.updates.after_cycle(bool(trial and trial.pending))
            if self.updates.due() and self.updates.run():
                self.board.reboot()
            port.collect()
            now = port.ticks_ms()
            wait = min(port.ticks_diff(due[k], now) for k in due) / 1000
            await self.wait(max(1, wait))


def run(board):
    try:
        cfg = config.load(board.data_dir + "/config.json")
        identity = board.identity()
    except (config.ConfigError, OSError, ValueError) as e:
        log(port.ERROR, "cannot start: %s" % e)
        board.led(LED_UNPROVISIONED)
        return EX_CONFIG
    port.set_log_level(cfg["log_level"])
    port.secret(identity.get("device_key"))
    log(port.INFO, "serial %s, %d target specs, endpoints %s" % (
        identity.get("serial"), len(cfg["targets"]), ", ".join(e.get("name", "?") for e in cfg["endpoints"])))
    port.set_clock(board.time)
    app = App(board, cfg, identity)
    try:
        asyncio.run(app.main())
    except Exception as e:  # noqa: BLE001  (whatever it was, the box must come back)
        app.health.fatal(e)
