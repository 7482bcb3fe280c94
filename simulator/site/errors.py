"""The one exception of the simulated site, in its own module so that every other
module of the package can raise it without importing the facade."""
import errno


class SiteError(RuntimeError):
    """A site could not be described, started or driven."""


def bind_error(device, exc: OSError) -> SiteError:
    """The error a device's UDP bind failure is reported as (with the usual fix)."""
    hint = ""
    if exc.errno == errno.EACCES:
        hint = " (privileged port: run as root or use a port override >= 1024)"
    return SiteError(f"device {device.name}: cannot bind UDP {device.address}:{device.port}: "
                     f"{exc.strerror}{hint}")
