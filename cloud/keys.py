"""The boxes' device keys, from fbtool's manufacturing manifest {serial: {kid: key hex}}."""
import json
import os


def manifest_keys(path):
    """Key lookup (device_id, kid) -> 32-byte key or None, re-reading the manifest when it changes."""
    cache = {"mtime": None, "data": {}}

    def keys(device_id, kid):
        try:
            m = os.path.getmtime(path)
            if m != cache["mtime"]:
                with open(path) as f:
                    cache["data"] = json.load(f)
                cache["mtime"] = m
        except (OSError, ValueError):
            return None
        k = cache["data"].get(device_id, {}).get(str(kid))
        return bytes.fromhex(k) if k else None

    return keys
