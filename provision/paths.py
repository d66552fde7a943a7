"""Where provision finds its own files (roles, templates, playbooks) and keeps each cluster's state."""

from __future__ import annotations

import os
from pathlib import Path

# The checkout provision runs from: roles, templates and playbooks sit beside the package.
HOME = Path(os.environ.get("PROVISION_HOME", Path(__file__).resolve().parent.parent))
TEMPLATES = HOME / "templates"
ROLES = HOME / "roles"
PLAYBOOKS = HOME / "playbooks"
VAGRANTFILE = HOME / "Vagrantfile"


def state_root() -> Path:
    """$PROVISION_STATE_DIR, else $XDG_STATE_HOME/provision, else ~/.local/state/provision."""
    if os.environ.get("PROVISION_STATE_DIR"):
        return Path(os.environ["PROVISION_STATE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "provision"


def state_dir(cluster_name: str) -> Path:
    return state_root() / cluster_name
