"""Factory identity: each box's serial, device key and key id, and the cloud's manufacturing manifest."""
import json
import os
import secrets

from .errors import FatalError


def new(serial, kid=1):
    return {"serial": serial, "kid": kid, "device_key": secrets.token_hex(32)}


def add_to_manifest(path, ident):
    """The cloud's copy of the device keys: {serial: {kid: key hex}} (docs/envelope.md)."""
    manifest = {}
    if os.path.exists(path):
        with open(path) as f:
            try:
                manifest = json.load(f)
            except ValueError as e:
                raise FatalError("%s is not a manifest: %s" % (path, e),
                                 hint="it is JSON {serial: {kid: key hex}}; fix or move it")
    manifest.setdefault(ident["serial"], {})[str(ident["kid"])] = ident["device_key"]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, path)
