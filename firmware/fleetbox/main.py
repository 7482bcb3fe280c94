"""The application: one asyncio loop that collects, spools and uploads on a schedule."""
import asyncio

from fleetbox import cbor, collector, config, port, snmp, targets, uplink
from fleetbox.spool import Spool
from fleetbox.version import VERSION  # noqa: F401  (the loader prints it)

LED_RUNNING = "running"
LED_UPLINK_FAILING = "uplink-failing"
LED_UNPROVISIONED = "unprovisioned"
BATCH_RECORDS = 8


def log(msg):
    print("box: " + msg)


class App:
    def __init__(self, board, cfg, identity):
        self.board = board
        self.cfg = cfg
        self.spool = Spool(board.data_dir + "/spool", cfg["spool_max"])
        self.uplink = uplink.Uplink(cfg, identity, board.data_dir)
        self.cycle = 0

    def _spool(self, scan, started, records):
        self.spool.put(cbor.dumps({"scan": scan, "cycle": started, "records": records}))

    async def collect(self, scan="full"):
        """One sweep of the configured targets; records go to the spool in batches as they come."""
        cfg = self.cfg
        started = port.time_s()
        pending = []

        def on_record(rec):
            pending.append(rec)
            if len(pending) >= BATCH_RECORDS:
                self._spool(scan, started, pending[:])
                del pending[:]

        client = snmp.Client(timeout_ms=cfg["timeout_ms"], retries=cfg["retries"])
        try:
            addrs = targets.expand(cfg["targets"], cfg["exclude"], cfg["snmp_port"])
            probed, found = await collector.sweep(client, addrs, on_record, cfg["communities"][0],
                                                  cfg["snmp_version"], cfg["workers"])
        finally:
            client.close()
        if pending:
            self._spool(scan, started, pending)
        log("cycle %d: %s scan probed %d addresses, found %d printers, spool holds %d"
            % (self.cycle, scan, probed, found, len(self.spool)))

    def upload(self):
        try:
            n = self.uplink.drain(self.spool)
            if n:
                log("uploaded %d batches via %s" % (n, self.uplink.stats["last_endpoint"]))
            self.board.led(LED_RUNNING)
        except uplink.UplinkError as e:
            log("upload failed, %d batches kept: %s" % (len(self.spool), e))
            self.board.led(LED_UPLINK_FAILING)

    async def wait(self, seconds):
        end = port.ticks_ms() + int(seconds * 1000)
        while port.ticks_diff(end, port.ticks_ms()) > 0:
            self.board.feed_watchdog()
            await asyncio.sleep(min(1, port.ticks_diff(end, port.ticks_ms()) / 1000))

    async def main(self):
        self.board.led(LED_RUNNING)
        interval = self.cfg["intervals"].get("full", 300)
        while True:
            self.cycle += 1
            t0 = port.ticks_ms()
            await self.collect("full")
            self.upload()
            port.collect()
            elapsed = port.ticks_diff(port.ticks_ms(), t0) / 1000
            await self.wait(max(1, interval - elapsed))


def run(board):
    try:
        cfg = config.load(board.data_dir + "/config.json")
        identity = board.identity()
    except (config.ConfigError, OSError, ValueError) as e:
        log("cannot start: %s" % e)
        board.led(LED_UNPROVISIONED)
        raise SystemExit(78)
    log("serial %s, %d target specs, endpoints %s" % (
        identity.get("serial"), len(cfg["targets"]), ", ".join(e.get("name", "?") for e in cfg["endpoints"])))
    asyncio.run(App(board, cfg, identity).main())
