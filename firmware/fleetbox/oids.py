"""The standard-MIB objects the collector reads (SNMPv2-MIB, IF-MIB, IP-MIB,
HOST-RESOURCES-MIB, ENTITY-MIB, Printer-MIB RFC 3805); vendor OIDs live in profiles.

Written out whole, not joined from prefixes: a literal is loaded with the module's
bytecode, a joined string is one more heap object (~64 B each on the box)."""

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SYS_CONTACT = "1.3.6.1.2.1.1.4.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYS_LOCATION = "1.3.6.1.2.1.1.6.0"
# the system group as discovery's first GET asks it (one tuple, shared)
SYS_GROUP = ("1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.4.0",
             "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.6.0")
IF_PHYS_ADDRESS = "1.3.6.1.2.1.2.2.1.6"
IP_AD_ENT_IF_INDEX = "1.3.6.1.2.1.4.20.1.2."
HR_DEVICE = "1.3.6.1.2.1.25.3.2.1"
HR_PRINTER_STATUS = "1.3.6.1.2.1.25.3.5.1.1."
HR_PRINTER_ERRORS = "1.3.6.1.2.1.25.3.5.1.2."
HR_DEVICE_PRINTER = "1.3.6.1.2.1.25.3.1.5"
ENT_SERIAL = "1.3.6.1.2.1.47.1.1.1.1.11.1"
ENT_MODEL = "1.3.6.1.2.1.47.1.1.1.1.13.1"
ENT_FIRMWARE = "1.3.6.1.2.1.47.1.1.1.1.9.1"
PRINTER_MIB = "1.3.6.1.2.1.43"
PRT_SERIAL = "1.3.6.1.2.1.43.5.1.1.17.1"
PRT_CONSOLE_LINES = "1.3.6.1.2.1.43.5.1.1.11.1"
PRT_LIFE_COUNT = "1.3.6.1.2.1.43.10.2.1.4.1.1"
PRT_MARK_TECH = "1.3.6.1.2.1.43.10.2.1.2.1.1"
PRT_COLORANTS = "1.3.6.1.2.1.43.10.2.1.6.1.1"
PRT_SUPPLIES = "1.3.6.1.2.1.43.11.1.1"
PRT_COLORANT = "1.3.6.1.2.1.43.12.1.1"
PRT_MEDIA_PATH = "1.3.6.1.2.1.43.13.4.1"
PRT_CONSOLE = "1.3.6.1.2.1.43.16.5.1"
PRT_ALERT = "1.3.6.1.2.1.43.18.1.1"

IF_ROOT = IF_PHYS_ADDRESS
SUPPLY_ROOT = "1.3.6.1.2.1.43.11.1.1.9"
ALERT_ROOT = "1.3.6.1.2.1.43.18.1.1.2"
