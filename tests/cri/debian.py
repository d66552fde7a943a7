"""Files from Debian's packages of any suite, without touching this machine's apt configuration.

`apt-get download` reads a private sources.list and package lists under the cache directory, so bookworm's host
can take containerd 2.1 from sid or 1.7 from trixie; `dpkg-deb -x` unpacks a package without installing it.
Everything is cached by suite and package version. The test lanes run at once (tests/run.sh: pytest-xdist workers and
the VM lane), so whatever writes to the cache holds `cache_lock()`: two `apt-get update`s of one lists directory
fail on apt's lock, and a half-written file would be read as a whole one.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CACHE = Path(os.environ.get("PROVISION_TEST_CACHE", "/var/cache/provision-tests"))
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
_lock = threading.RLock()  # threads of this process (molecule's scenarios run two at a time)
_depth = 0


@contextmanager
def cache_lock() -> Iterator[None]:
    """The test cache to this thread alone: an flock other processes wait for, re-entered freely by its holder."""
    global _depth
    with _lock:
        if _depth:
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            _depth = 1
            try:
                yield
            finally:
                _depth = 0


def _apt_options(suite: str) -> list[str]:
    root = CACHE / "apt" / suite
    (root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    sources = root / "sources.list"
    sources.write_text(f"deb [signed-by={KEYRING}] {MIRROR} {suite} main\n")
    return ["-o", f"Dir::Etc::sourcelist={sources}", "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={root / 'lists'}", "-o", "APT::Sandbox::User=root"]


def _update(suite: str) -> None:
    stamp = CACHE / "apt" / suite / "updated"
    if stamp.exists():
        return
    subprocess.run(["apt-get", "-q", *_apt_options(suite), "update"], check=True, capture_output=True)
    stamp.touch()


def unpacked(suite: str, package: str) -> Path:
    """The root of `package` from `suite`, unpacked (not installed) into the cache."""
    with cache_lock():
        return _unpacked(suite, package)


def _unpacked(suite: str, package: str) -> Path:
    _update(suite)
    debs = CACHE / "debs" / suite
    debs.mkdir(parents=True, exist_ok=True)
    version = subprocess.run(["apt-cache", *_apt_options(suite), "show", "--no-all-versions", package],
                             check=True, capture_output=True, text=True).stdout
    version = next(line.split(": ", 1)[1] for line in version.splitlines() if line.startswith("Version: "))
    root = CACHE / "roots" / suite / f"{package}_{version.replace(':', '%3a')}"
    if not root.is_dir():
        subprocess.run(["apt-get", "-q", *_apt_options(suite), "-o", f"Dir::Cache::archives={debs}",
                        "download", package], cwd=debs, check=True, capture_output=True)
        deb = next(debs.glob(f"{package}_*{version.split(':')[-1]}_*.deb"))
        partial = root.with_name(root.name + ".partial")
        subprocess.run(["rm", "-rf", str(partial)], check=True)
        partial.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
        partial.rename(root)
    return root


def package_version(root: Path) -> str:
    """The upstream version of an unpacked package (its cache folder's name): 2.1.9 for 2.1.9+ds1-5."""
    version = root.name.split("_", 1)[1].split("%3a")[-1]
    return version.split("~")[0].split("+")[0].split("-")[0]
