"""The site description (site.yaml, or the same mapping built in a test): reading it and
checking the site as a whole — unique names and endpoints, addresses inside the
declared network. Each device checks its own keys (simulator/site/device.py).

Schema of the YAML file (top level)::

    network: 127.31.0.0/24        # optional: every address must be inside it
    defaults: {port: 161, community: public}
    speed: 1.0                    # multiplies every dynamic printer's pages_per_second
    devices: [ ... ]

Device keys (all kinds): ``name``, ``address``, ``port``, ``community``, ``kind``,
``extra_agent_port`` (Canon's second agent: see simulator/canon47545.py).

``kind: recording``: ``recording`` (path relative to $FLEETBOX_WALKS, default
``../shared/printer-walks`` next to the repository), ``printer`` (bool),
``manufacturer``, ``model``; optional ``serial`` / ``serial_source`` and ``total`` /
``total_source`` when the recording only has them in a vendor MIB.

``kind: dynamic``: ``manufacturer``, ``model``, ``serial``, ``sys_descr``,
``sys_object_id``, ``sys_name``, ``location``, ``contact``, ``mac``, ``hr_devices``
(list of ``{type, descr}``; ``type`` one of ``HR_DEVICE_TYPES``), ``extra`` (list of
``{oid, type, value}``, value may be ``@total``, ``@pages``, ``@color``, ``@mono``,
``@serial``), optional ``v3`` (``{user, auth, auth_key, priv, priv_key}``) and, for a
printer, a ``printer`` mapping:

    hr_device_descr, technology (laser|led|inkjet|solid-ink|thermal|impact|<int>),
    duplex, life_count, life_count_oid (false: no prtMarkerLifeCount), serial_oid (false: no
    prtGeneralSerialNumber), pages_per_second, color_ratio (share of colour pages),
    errors (static hrPrinterDetectedErrorState names), console (display text),
    supplies: [{description, type, colorant, unit, max, level, yield, class, uses, replace}]

A dynamic printer with ``web: {style: hp-ews|brother|kyocera-ccrx|ricoh-wim}`` also serves its embedded web
page, showing the live total, on its address (ports 80/443, or ``Site(web_ports=...)``;
see simulator/webpages.py).

A supply with a ``yield`` (pages that take it from ``max`` to empty) runs down (or, for
a receptacle such as waste toner, fills up) as pages are printed; ``uses`` is ``all``
(every page) or ``color`` (colour pages only; the default for cyan/magenta/yellow).
When it is exhausted it is replaced (back to ``max``) unless ``replace: false``.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path

import yaml

from simulator.site.device import Device
from simulator.site.errors import SiteError
from simulator.site.paths import DEFAULT_SITE_YAML


def read_yaml(path: str | Path | None) -> tuple[dict, str]:
    """(description, its source name) from a YAML file (default simulator/site.yaml)."""
    path = Path(path) if path else DEFAULT_SITE_YAML
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SiteError(f"cannot read site description {path}: {exc}") from None
    return data, str(path)


def build_devices(description: dict, port_override: int | None, speed: float | None,
                  source: str) -> tuple[float, ipaddress.IPv4Network | None, list[Device]]:
    """(speed, network, devices) of a description, or SiteError saying what is wrong."""
    if not isinstance(description, dict) or not isinstance(description.get("devices"), list):
        raise SiteError(f"{source}: expected a mapping with a 'devices' list")
    defaults = description.get("defaults") or {}
    speed = float(speed if speed is not None else description.get("speed", 1.0))
    network = ipaddress.IPv4Network(description["network"]) if description.get("network") else None
    devices = [Device(spec, defaults, port_override, speed) for spec in description["devices"]]
    names, endpoints = set(), set()
    for d in devices:
        if d.name in names:
            raise SiteError(f"{source}: duplicate device name {d.name!r}")
        names.add(d.name)
        if d.endpoint in endpoints:
            raise SiteError(f"{source}: two devices on {d.address}:{d.port}")
        endpoints.add(d.endpoint)
        if network and ipaddress.IPv4Address(d.address) not in network:
            raise SiteError(f"{source}: {d.name} {d.address} is outside {network}")
    return speed, network, devices
