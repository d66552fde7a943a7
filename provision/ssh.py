"""SSH: the per-cluster key, pinned host keys, and a reachability check that names every failing host.

Host keys are pinned in `<state>/known_hosts`: recorded when a machine is created (read from the node itself
by the provider) or, for existing hosts, on first contact when the user's own known_hosts does not already
vouch for them; a key that changes afterwards is refused. Ansible reads the same file with
StrictHostKeyChecking=yes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provision.inventory import Connection


def ensure_key(path: Path) -> Path:
    """An ed25519 key pair at path (0600) and path.pub; made once, kept across runs."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private)
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        path.with_suffix(".pub").write_bytes(public + b" provision\n")
    os.chmod(path, 0o600)
    return path


_PIN_LOCK = threading.Lock()


def known_host_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def pin_host_key(known_hosts: Path, host: str, port: int, public_line: str) -> None:
    """Record 'TYPE BASE64' for host:port, replacing any earlier entry for that name (a new machine)."""
    name = known_host_name(host, port)
    parts = public_line.split()
    entry = f"{name} {parts[0]} {parts[1]}\n"
    with _PIN_LOCK:
        _replace_entry(known_hosts, name, entry)


def _replace_entry(known_hosts: Path, name: str, entry: str) -> None:
    lines = known_hosts.read_text().splitlines(keepends=True) if known_hosts.exists() else []
    kept = [ln for ln in lines if ln.split(" ", 1)[0] != name]
    if kept + [entry] != lines:
        known_hosts.parent.mkdir(parents=True, exist_ok=True)
        known_hosts.write_text("".join(kept) + entry)
        os.chmod(known_hosts, 0o600)


def pinned(known_hosts: Path) -> dict[str, str]:
    """The pinned host keys: known_hosts name -> 'TYPE BASE64'."""
    if not known_hosts.exists():
        return {}
    parts = (ln.split() for ln in known_hosts.read_text().splitlines())
    return {p[0]: " ".join(p[1:3]) for p in parts if len(p) >= 3}


def forget_hosts(known_hosts: Path, names: Iterable[str]) -> None:
    if not known_hosts.exists():
        return
    drop = set(names)
    lines = known_hosts.read_text().splitlines(keepends=True)
    known_hosts.write_text("".join(ln for ln in lines if ln.split(" ", 1)[0] not in drop))


@dataclass(frozen=True)
class Reach:
    node: str
    ok: bool
    why: str = ""
    slow: bool = False  # a timeout: the host may only be busy (a loaded hypervisor, an emulated guest)


# A host that times out is asked again until this many seconds have passed; a refusal (wrong key, changed host
# key, closed port, unknown name) is final at once
PATIENCE = 60.0


class _PinNew(paramiko.MissingHostKeyPolicy):
    """First contact with a host nobody vouches for: record its key (accept-new). Changes are refused by paramiko."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        host, _, port = hostname.strip("[").partition("]:")
        pin_host_key(self.known_hosts, host, int(port) if port else 22, f"{key.get_name()} {key.get_base64()}")


def check_one(name: str, conn: Connection, known_hosts: Path, accept_new: bool, timeout: float = 10,
              jump: Connection | None = None, patience: float = PATIENCE) -> Reach:
    """Log in and run python3; a host that only times out is asked again, every 2 s, for `patience` seconds."""
    deadline = time.monotonic() + patience
    while True:
        reach = _check_once(name, conn, known_hosts, accept_new, timeout, jump)
        if not reach.slow:
            return reach
        if time.monotonic() + 2 > deadline:
            return Reach(name, False, f"{reach.why} (asked for {patience:.0f} s)", True)
        time.sleep(2)


def _check_once(name: str, conn: Connection, known_hosts: Path, accept_new: bool, timeout: float,
                jump: Connection | None) -> Reach:
    client = paramiko.SSHClient()
    client.load_system_host_keys()
    if known_hosts.exists():
        client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(_PinNew(known_hosts) if accept_new else paramiko.RejectPolicy())
    sock = None
    try:
        if jump is not None:
            bastion = paramiko.SSHClient()
            bastion.load_system_host_keys()
            if known_hosts.exists():
                bastion.load_host_keys(str(known_hosts))
            bastion.set_missing_host_key_policy(_PinNew(known_hosts) if accept_new else paramiko.RejectPolicy())
            bastion.connect(jump.host, jump.port, jump.user, key_filename=jump.key, timeout=timeout,
                            allow_agent=jump.key is None, look_for_keys=jump.key is None)
            transport = bastion.get_transport()
            assert transport is not None
            sock = transport.open_channel("direct-tcpip", (conn.host, conn.port), ("127.0.0.1", 0))
        client.connect(conn.host, conn.port, conn.user, key_filename=conn.key, timeout=timeout,
                       banner_timeout=timeout, auth_timeout=timeout, sock=sock,
                       allow_agent=conn.key is None, look_for_keys=conn.key is None)
        _, stdout, _ = client.exec_command("python3 -c 'print(1)'", timeout=timeout)
        if stdout.read().strip() != b"1":
            return Reach(name, False, "logged in, but python3 is missing (Ansible needs it)")
        return Reach(name, True)
    except paramiko.BadHostKeyException:
        return Reach(name, False, f"host key changed for {conn.host}:{conn.port} (pinned in {known_hosts}); "
                                  "if the machine was rebuilt, remove its line there")
    except paramiko.AuthenticationException:
        return Reach(name, False, f"{conn.user}@{conn.host}:{conn.port} refused the key "
                                  f"{conn.key or '(agent/default keys)'}; check user and key")
    except paramiko.SSHException as exc:
        text = str(exc)
        if "not found in known_hosts" in text:
            return Reach(name, False, f"unknown host key for {conn.host}:{conn.port}")
        # no banner in time ends paramiko's transport before the login: "No existing session"
        slow = any(t in text for t in ("Timeout", "timed out", "protocol banner", "No existing session"))
        return Reach(name, False, f"SSH to {conn.user}@{conn.host}:{conn.port} failed: {text}", slow)
    except FileNotFoundError:
        return Reach(name, False, f"SSH key {conn.key} does not exist")
    except TimeoutError:
        return Reach(name, False, f"{conn.host}:{conn.port} did not answer within {timeout:.0f}s", True)
    except OSError as exc:
        return Reach(name, False, f"cannot connect to {conn.host}:{conn.port}: {exc.strerror or exc}")
    finally:
        client.close()


def check_all(conns: dict[str, Connection], known_hosts: Path, accept_new: bool = False,
              timeout: float = 10, jump: Connection | None = None) -> list[Reach]:
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(conns)))) as pool:
        futures = [pool.submit(check_one, n, c, known_hosts, accept_new, timeout, jump) for n, c in conns.items()]
        return [f.result() for f in futures]
