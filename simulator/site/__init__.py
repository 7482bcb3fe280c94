"""The simulated customer site: printers and non-printers as real SNMP agents on loopback.

A site is described declaratively in YAML (default: ``simulator/site.yaml``; schema in
simulator/site/spec.py). Each device listens on its own loopback address (127.x.y.z)
and UDP port and is either

* ``kind: dynamic`` -- a pysnmp agent (asyncio, one SnmpEngine per device, all in one
  background thread) serving a MIB computed live from the device's state: page
  counters advance with wall time and consumables run down in proportion; or
* ``kind: recording`` -- a real SNMP walk (``.snmprec``) replayed by snmpsim. All
  recorded devices share ONE snmpsim process: one SNMP engine per device, each with
  its own data directory and endpoint, so every device answers the same community.

Usage::

    from simulator.site import Site
    with Site.from_yaml(port_override=16161) as site:   # start() on enter, stop() on exit
        for rec in site.truth():                         # what the printers serve right now
            ...
        site.set_fault("hp-m404dn", "down")              # stop answering
        site.set_fault("hp-m404dn", "up")

Humans: ``python -m simulator.site [--port N]`` runs the site until Ctrl-C.

One job per module, so a change to one concern stays in one file:

* ``errors``       SiteError, the one exception
* ``paths``        where site.yaml and the printer recordings are
* ``mib``          MIB OIDs and enumerations, OID/MAC helpers
* ``spec``         reading and checking a site description (the YAML schema)
* ``device``       one device: its checked spec, its recording or live state, its truth
* ``snmprec``      .snmprec parsing, readdressing, and the truth a recording holds
* ``physics``      supplies that drain or fill with pages, a pausable clock
* ``live``         a dynamic device's running state and injected faults
* ``livemib``      the MIB a dynamic device serves, built from that state
* ``agents``       the pysnmp thread serving the dynamic devices
* ``snmpsim_proc`` the snmpsim process serving the recorded devices
* ``client``       a small SNMP GET client (readiness check, tests)
* ``facade``       Site: start/stop, truth, fault injection
* ``cli``          ``python -m simulator.site``

Every name below was importable from ``simulator.site`` before it became a package
and stays so.
"""
from simulator.site.client import snmp_get
from simulator.site.cli import main
from simulator.site.device import Device
from simulator.site.errors import SiteError
from simulator.site.facade import READY_TIMEOUT, Site
from simulator.site.live import LiveDevice
from simulator.site.mib import (COLOR_COLORANTS, ERROR_ALERTS, FAULT_KINDS, HR_DEVICE_ENTRY,
                                HR_DEVICE_TYPES, HR_DEVICE_TYPES_ROOT, HR_ERROR_BITS,
                                HR_PRINTER_ENTRY, HR_SYSTEM_UPTIME, IF_ENTRY, IF_NUMBER,
                                INK_TYPES, IP_ADDR_ENTRY, MARK_TECH, OID_LIFE_COUNT,
                                OID_SERIAL, OID_SYS_DESCR, PRT, PRT_ALERT_ENTRY,
                                PRT_COLORANT_ENTRY, PRT_CONSOLE_DISPLAY_ENTRY,
                                PRT_GENERAL_ENTRY, PRT_MARKER_ENTRY, PRT_MEDIA_PATH_ENTRY,
                                PRT_SUPPLIES_ENTRY, STOPPING_ERRORS, SUPPLY_CLASSES,
                                SUPPLY_TYPES, SUPPLY_UNITS, SYS, TONER_TYPES, WASTE_TYPES)
from simulator.site.paths import DEFAULT_SITE_YAML, DEFAULT_WALKS, HERE, REPO_ROOT, walks_dir
from simulator.site.snmprec import parse_snmprec, readdress_snmprec

__all__ = ["Site", "Device", "SiteError", "snmp_get", "parse_snmprec", "walks_dir"]

# Imported for re-export (ruff's F401 reads __all__ only).
_REEXPORTED = (
    COLOR_COLORANTS, ERROR_ALERTS, FAULT_KINDS, HR_DEVICE_ENTRY, HR_DEVICE_TYPES,
    HR_DEVICE_TYPES_ROOT, HR_ERROR_BITS, HR_PRINTER_ENTRY, HR_SYSTEM_UPTIME, IF_ENTRY,
    IF_NUMBER, INK_TYPES, IP_ADDR_ENTRY, MARK_TECH, OID_LIFE_COUNT, OID_SERIAL, OID_SYS_DESCR,
    PRT, PRT_ALERT_ENTRY, PRT_COLORANT_ENTRY, PRT_CONSOLE_DISPLAY_ENTRY, PRT_GENERAL_ENTRY,
    PRT_MARKER_ENTRY, PRT_MEDIA_PATH_ENTRY, PRT_SUPPLIES_ENTRY, STOPPING_ERRORS,
    SUPPLY_CLASSES, SUPPLY_TYPES, SUPPLY_UNITS, SYS, TONER_TYPES, WASTE_TYPES,
    DEFAULT_SITE_YAML, DEFAULT_WALKS, HERE, REPO_ROOT, READY_TIMEOUT, LiveDevice, main,
    readdress_snmprec,
)
