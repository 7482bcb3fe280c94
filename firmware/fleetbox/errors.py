"""The root of every error the firmware raises on purpose: `except FleetboxError` tells
them all from bugs (which the app's last-resort handler turns into a fault and a reboot).

It derives from ValueError because MicroPython cannot give a class two exception bases
("multiple bases have instance lay-out conflict") and decoders' callers rely on
BERError, ConfigError, UsmError... being ValueErrors. The price: `except ValueError`
also catches SnmpError, HttpError and the others, so catch those by their own names.
"""


class FleetboxError(ValueError):
    pass
