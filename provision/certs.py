"""`provision certs`: every control plane's kubeadm certificates and the external etcd PKI, soonest expiry first;
`provision certs renew`: external etcd's member certificates rotated one member at a time, then kubeadm's renewal,
one control plane at a time.

The listing asks kubeadm itself (`kubeadm certs check-expiration -o json` on each control plane) and reads the
external etcd members' certificates with openssl (playbooks/certs.yml); it changes nothing. The renewal runs
playbooks/certs-renew.yml: for external etcd, new member and client certificates from its CA (made on this
machine) put on each member in turn, restarted and healthy before the next; then `kubeadm certs renew all` (with
the new etcd client certificate), the static pods restarted, the next control plane only once the API answers
again, then the admin kubeconfig in the state dir refreshed.
"""

from __future__ import annotations

import calendar
import json
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision import runner, state, topology
from provision.errors import UserError
from provision.inventory import jump_host
from provision.spec import Cluster

DEFAULT_THRESHOLD = "30d"
UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


@dataclass(frozen=True)
class Cert:
    node: str
    name: str
    ca: str  # the CA that signed it; "" for a CA
    expires: float | None  # epoch seconds; None when the file is missing or externally managed
    note: str = ""  # "missing", "externally managed"

    def residual(self, now: float) -> float | None:
        return None if self.expires is None else self.expires - now


def threshold_seconds(text: str) -> int:
    """'30d', '720h', '2w', '1d12h' -> seconds; a UserError (exit 2) for anything else."""
    parts = re.findall(r"(\d+)([wdhms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UserError(f"--threshold {text!r} is not a duration: write it as 30d, 720h or 2w", code=2)
    return sum(int(n) * UNITS[u] for n, u in parts)


def human(seconds: float) -> str:
    """364d, 10h, 5m: the residual time the way kubeadm's table shows it, negative when expired."""
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "m" and seconds >= size):
            return f"{sign}{int(seconds // size)}{unit}"
    return f"{sign}{int(seconds)}s"


# ---------------------------------------------------------------- reading what the nodes answered


def _epoch(rfc3339: str) -> float:
    return float(calendar.timegm(time.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ")))


def from_kubeadm(node: str, info: dict[str, Any]) -> list[Cert]:
    """kubeadm's CertificateExpirationInfo (output.kubeadm.k8s.io/v1alpha3): certificates, then CAs."""
    out = []
    for item in info.get("certificates", []) + info.get("certificateAuthorities", []):
        note = "missing" if item.get("missing") else "externally managed" if item.get("externallyManaged") else ""
        when = item.get("expirationDate")
        out.append(Cert(node, item["name"], item.get("caName", ""), _epoch(when) if when and not note else None,
                        note))
    return out


def from_etcd_files(node: str, lines: list[str]) -> list[Cert]:
    """The members' `<file> <notAfter ISO 8601>` lines (playbooks/files/cert-end-dates.sh)."""
    out = []
    for line in lines:
        name, _, when = line.partition(" ")
        stamp = calendar.timegm(time.strptime(when.strip(), "%Y-%m-%d %H:%M:%SZ"))
        out.append(Cert(node, f"etcd/{name}", "" if name == "ca.crt" else "etcd-ca", float(stamp)))
    return out


def soonest_first(certs: list[Cert]) -> list[Cert]:
    return sorted(certs, key=lambda c: (c.expires is None, c.expires or 0.0, c.node, c.name))


# ---------------------------------------------------------------- asking the nodes


def _running(cluster: Cluster, state_dir: Path) -> tuple[state.ClusterState, topology.Topology]:
    st = state.load(state_dir)
    if not st.initialized:
        raise UserError(f"{cluster.name} has no running cluster on record in {state_dir}; run `provision up` first")
    return st, topology.build(cluster, st.init_node, exclude=st.removed)


def collect(cluster: Cluster, state_dir: Path) -> list[Cert]:
    """Every control plane's and external etcd member's certificates, soonest expiry first."""
    _, topo = _running(cluster, state_dir)
    hosts = topo.groups["control_plane"] + topo.groups["external_etcd"]
    with tempfile.TemporaryDirectory(dir=state_dir) as raw:
        result = runner.run_playbook(state_dir, "certs.yml", len(hosts), extravars={"certs_dest": raw},
                                     limit=",".join(hosts), jump=jump_host(cluster))
        if not result.ok:
            raise UserError(f"reading the certificates failed:\n  {result.failure_lines()}")
        certs: list[Cert] = []
        for host in hosts:
            answer = json.loads(Path(raw, f"{host}.json").read_text())
            certs += from_kubeadm(host, answer["kubeadm"]) if "kubeadm" in answer else \
                from_etcd_files(host, answer["files"])
    return soonest_first(certs)


def expiring(certs: list[Cert], within: int, now: float | None = None) -> list[Cert]:
    now = time.time() if now is None else now
    return [c for c in certs if c.expires is not None and c.expires - now < within]


def renew(cluster: Cluster, state_dir: Path, say: Callable[[str], None],
          progress: runner.Progress | None = None) -> runner.RunResult:
    st, topo = _running(cluster, state_dir)
    planes = [c for c in topo.groups["control_plane"] if c in st.members]
    members = [e for e in topo.groups["external_etcd"] if e in st.members]
    operator = st.init_node if st.init_node in planes else planes[0]
    if members:
        say(f"rotating external etcd's member certificates on {', '.join(members)}, one member at a time")
    say(f"renewing kubeadm's certificates on {', '.join(planes)}, one at a time")
    result = runner.run_playbook(state_dir, "certs-renew.yml", len(planes) + len(members), progress,
                                 extravars={"provision_operator": operator}, limit=",".join(members + planes),
                                 jump=jump_host(cluster))
    if not result.ok:
        raise UserError(f"certificate renewal failed (members and control planes before the failed one are "
                        f"renewed):\n"
                        f"  {result.failure_lines()}")
    return result
