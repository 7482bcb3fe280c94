"""Where the site finds its files: the default description next to the package and the
real printer recordings, which live outside the repository (shared with the fleet)."""
from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent      # simulator/: site.yaml stays there
DEFAULT_SITE_YAML = HERE / "site.yaml"
REPO_ROOT = HERE.parent
DEFAULT_WALKS = REPO_ROOT.parent / "shared" / "printer-walks"


def walks_dir() -> Path:
    """Folder of the real printer recordings ($FLEETBOX_WALKS or ../shared/printer-walks)."""
    env = os.environ.get("FLEETBOX_WALKS")
    return Path(env) if env else DEFAULT_WALKS
