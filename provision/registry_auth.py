"""The registry mirror's credentials: read from a containers auth file, never from the spec.

The file is what `skopeo login --authfile FILE <mirror>` (or `podman login`, `docker login`) writes:
`{"auths": {"<host:port>": {"auth": "<base64 of user:password>"}}}`. `provision artifacts push` hands it to skopeo;
the nodes' containerd gets the entry's `auth` (containerd's registry.configs.<mirror>.auth, as in
.docker/config.json). Every problem is one line naming the file and how to fix it.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

from provision.errors import UserError

LOGIN = "write it with `skopeo login --authfile {path} {registry}`"


def mirror_auth(path: Path, registry: str) -> str:
    """The base64 `auth` of `registry` in the auth file at `path`."""
    fix = LOGIN.format(path=path, registry=registry)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"artifacts.authFile {path} does not exist; {fix}", code=2) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"artifacts.authFile {path} is not a containers auth file ({exc}); {fix}", code=2) from None
    entry = data.get("auths", {}).get(registry) if isinstance(data, dict) else None
    auth = entry.get("auth") if isinstance(entry, dict) else None
    if not isinstance(auth, str) or not _is_user_and_password(auth):
        raise UserError(f"artifacts.authFile {path} holds no credentials for {registry} (auths.\"{registry}\".auth, "
                        f"base64 of user:password); {fix}", code=2)
    return auth


def _is_user_and_password(auth: str) -> bool:
    try:
        user, sep, _ = base64.b64decode(auth, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return bool(user and sep)
