"""The chaos soak's short version (bench/chaos/soak.py): the simulator with one fault of each
kind (power cut, cable pull, cloud outage, full or failing flash, printer fault, hostile cloud
replies), then the accounting: nothing the spool's policy keeps is lost, nothing stored twice, the box never died."""
import random

from bench.chaos.soak import Soak, summary

# ports of its own (the long soak uses 27xxx, the other tests 17xxx)
PORTS = {"snmp": 26161, "cloud": 26443, "web": {80: 26080, 443: 26444}, "liberty": "127.77.26.1",
         "rescue": "127.77.26.2"}


def test_short_chaos_soak_loses_duplicates_and_kills_nothing(tmp_path):
    seed = random.randrange(1 << 30)
    soak = Soak(str(tmp_path), seed, 1, fault_every=2.5, interval=6, ports=PORTS,
                script=["power", "cable", "cloud", "flash", "printer", "hostile"], hold_scale=0.25,
                # hostile last, on both endpoints and over two of the box's cycles: whichever endpoint
                # the box is on after the outage, its uploads meet the crafted replies
                hold_at_least={"hostile": 14}, hostile_targets=("both",), echo=lambda s: None)
    r = soak.run()
    assert r["faults"] == 6, r
    assert r["batches_spooled"] >= 4, r      # the box went on collecting through the faults
    assert sum(r["hostile_replies"].values()) >= 1, r
    assert (r["lost"], r["duplicated"], r["dead"]) == (0, 0, 0), "seed %d: %s\n%s" % (seed, summary(r), r)
