"""The cluster spec: what a person writes, read strictly and checked whole before anything runs.

`load_spec(path)` returns a resolved `Cluster` (topology preset defaults filled in) or raises
`SpecError` carrying one `Problem` per mistake. Each problem renders as one line:
``cluster.yaml:12: networking.cni: 'weeve' is not a known CNI; use one of: calico, flannel, cilium, weave``.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from provision import versions

API_VERSION = "provision.dev/v1alpha1"
TOPOLOGIES = ("all-in-one", "single-master", "multi-master", "ha")
CNIS = ("calico", "flannel", "cilium", "weave")
LEGACY_CNIS = ("weave",)
NODE_ROLES = ("control-plane", "worker", "etcd", "loadbalancer")
API_SERVER_PORT = 6443  # where kubeadm's API servers listen (InitConfiguration's bindPort)

# RFC 1123 label: what a hostname, a Kubernetes node name and a Docker container name all accept.
# Anchored with \Z, not $ (which also matches before a trailing newline); [0-9], not \d (any Unicode digit).
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
HOSTNAME = re.compile(r"^(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\Z")
VERSION = re.compile(r"^v?([0-9]+)\.([0-9]+)(\.([0-9]+))?\Z")
PATCH_VERSION = re.compile(r"^v?[0-9]+\.[0-9]+\.[0-9]+\Z")
POSIX_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\Z")
TEMPLATE_MARK = re.compile(r"\{[{%#]")


@dataclass(frozen=True)
class Problem:
    field: str
    message: str
    fix: str = ""
    line: int | None = None

    def render(self, source: str = "") -> str:
        where = f"{source}:{self.line}: " if source and self.line else (f"{source}: " if source else "")
        fix = f"; {self.fix}" if self.fix else ""
        return printable(f"{where}{self.field}: {self.message}{fix}")


def printable(text: str) -> str:
    """One terminal-safe line: newlines, escape sequences and other invisible characters written as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def shown(value: Any, limit: int = 60) -> str:
    """A value from the spec as a message shows it: repr, shortened; containers by their type only."""
    if isinstance(value, (dict, list, tuple, set)):
        return type(value).__name__
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"a {value.bit_length()}-bit number"  # repr() of a huge int is slow, or refused outright
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 5]}...{text[-2:]}"


class SpecError(Exception):
    """The spec is unusable; `problems` says every reason, one line each."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = problems
        self.source = source
        super().__init__("\n".join(p.render(source) for p in problems))

    def lines(self) -> list[str]:
        return [p.render(self.source) for p in self.problems]


def _alias(name: str) -> str:
    return to_camel(name).replace("Cidr", "CIDR").replace("Mib", "MiB").replace("Cni", "CNI")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=_alias, populate_by_name=True, strict=True)


class KubernetesSpec(_Model):
    version: str = versions.DEFAULT_KUBERNETES_MINOR


class VagrantSpec(_Model):
    backend: Literal["libvirt", "virtualbox", "docker"] = "libvirt"
    box: str = "debian/bookworm64"
    cpus: int = Field(2, ge=1, le=64)
    memory_mib: int = Field(2048, ge=512, le=262144)


class SSHTarget(_Model):
    address: str
    user: str = "root"
    port: int = Field(22, ge=1, le=65535)
    key: str | None = None


class StaticSpec(_Model):
    bastion: SSHTarget | None = None


class ProviderSpec(_Model):
    type: Literal["docker", "vagrant", "static"] = "docker"
    vagrant: VagrantSpec | None = None
    static: StaticSpec | None = None


class NodeCounts(_Model):
    control_planes: int = Field(1, ge=0, le=99)
    workers: int = Field(0, ge=0, le=5000)
    etcd: int = Field(0, ge=0, le=99)
    load_balancers: int = Field(0, ge=0, le=9)


class HostSpec(_Model):
    name: str
    address: str
    roles: list[Literal["control-plane", "worker", "etcd", "loadbalancer"]] = Field(min_length=1)
    user: str = "root"
    port: int = Field(22, ge=1, le=65535)
    key: str | None = None


class EtcdSpec(_Model):
    mode: Literal["stacked", "external"] = "stacked"
    version: str | None = None
    source: Literal["release", "distro", "artifacts"] = "release"


class EndpointSpec(_Model):
    type: Literal["none", "vip", "local-proxy", "external"] = "none"
    address: str | None = None
    port: int = Field(6443, ge=1, le=65535)


class NetworkingSpec(_Model):
    node_cidr: str | None = None
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    cni: str = "calico"
    allow_legacy_cni: bool = False


class RuntimeSpec(_Model):
    name: Literal["containerd"] = "containerd"
    cgroup_driver: Literal["systemd"] = "systemd"
    # None: the upstream release (online) or the artifacts directory's copy of it (offline)
    source: Literal["distro", "release", "artifacts"] | None = None
    version: str | None = None
    # Run a containerd below the Kubernetes minor's floor anyway (labs and tests; plan warns).
    allow_unsupported_version: bool = False


class DashboardSpec(_Model):
    type: Literal["headlamp", "kubernetes-dashboard", "none"] = "headlamp"
    access: Literal["read-only", "admin"] = "read-only"


class ArtifactsSpec(_Model):
    mode: Literal["online", "offline"] = "online"
    dir: str | None = None


class ClusterSpec(_Model):
    api_version: Literal["provision.dev/v1alpha1"]
    kind: Literal["Cluster"]
    name: str
    topology: Literal["all-in-one", "single-master", "multi-master", "ha"]
    kubernetes: KubernetesSpec = KubernetesSpec()
    provider: ProviderSpec = ProviderSpec()
    nodes: NodeCounts | None = None
    hosts: list[HostSpec] | None = None
    etcd: EtcdSpec = EtcdSpec()
    endpoint: EndpointSpec = EndpointSpec()
    networking: NetworkingSpec = NetworkingSpec()
    container_runtime: RuntimeSpec = RuntimeSpec()
    dashboard: DashboardSpec = DashboardSpec()
    artifacts: ArtifactsSpec = ArtifactsSpec()


# What each topology preset fills in where the spec is silent. The spec wins wherever it speaks.
PRESETS: dict[str, dict[str, Any]] = {
    "all-in-one": {
        "nodes": {"controlPlanes": 1, "workers": 0, "etcd": 0, "loadBalancers": 0},
        "etcd": {"mode": "stacked"},
        "endpoint": {"type": "none"},
    },
    "single-master": {
        "nodes": {"controlPlanes": 1, "workers": 2, "etcd": 0, "loadBalancers": 0},
        "etcd": {"mode": "stacked"},
        "endpoint": {"type": "none"},
    },
    "multi-master": {
        "nodes": {"controlPlanes": 2, "workers": 2, "etcd": 1, "loadBalancers": 2},
        "etcd": {"mode": "external"},
        "endpoint": {"type": "vip"},
    },
    "ha": {
        "nodes": {"controlPlanes": 3, "workers": 2, "etcd": 3, "loadBalancers": 2},
        "etcd": {"mode": "external"},
        "endpoint": {"type": "vip"},
    },
}


def _merge(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_preset(raw: dict[str, Any]) -> dict[str, Any]:
    """Fill the topology preset's defaults into the raw mapping (before strict validation)."""
    topology = raw.get("topology")
    if not isinstance(topology, str) or topology not in PRESETS:
        return raw
    preset = copy.deepcopy(PRESETS[topology])
    given_etcd = raw.get("etcd")
    given_nodes = raw.get("nodes")
    stacked = isinstance(given_etcd, dict) and given_etcd.get("mode") == "stacked"
    if stacked:
        preset["nodes"]["etcd"] = 0
    given_endpoint = raw.get("endpoint")
    if isinstance(given_endpoint, dict) and given_endpoint.get("type") not in (None, "vip"):
        preset["nodes"]["loadBalancers"] = 0
    provider = raw.get("provider")
    if isinstance(provider, dict) and provider.get("type") == "static" or "hosts" in raw:
        del preset["nodes"]  # the hosts list says which machine does what
    elif isinstance(given_nodes, dict) and given_nodes.get("etcd", 0) and "etcd" not in raw:
        preset["etcd"] = {"mode": "external"}
    return _merge(preset, raw)


# ---------------------------------------------------------------- reading the file


Loc = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a value it cannot build (a date like 2024-13-01, an integer of
    thousands of digits) is a YAML error with its line instead of a stray ValueError."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:
            what = str(exc).split(";")[0].strip()
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value ({what})",
                                                    node.start_mark) from None


def _scan(text: str) -> tuple[dict[Loc, int], list[tuple[Loc, int]]]:
    """Map each key path of the YAML document to its 1-based line; list keys written twice in one mapping."""
    index: dict[Loc, int] = {}
    twice: list[tuple[Loc, int]] = []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return index, twice
    todo: list[tuple[yaml.Node, Loc]] = [(root, ())] if root is not None else []
    walked: set[int] = set()  # an alias shares its anchor's node: walk it once (no endless or exponential walk)
    while todo:
        node, path = todo.pop()
        index.setdefault(path, node.start_mark.line + 1)
        if id(node) in walked:
            continue
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[tuple[str, str]] = set()
            children: list[tuple[yaml.Node, Loc]] = []
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    continue  # a list or mapping as a key: the loader has refused the document already
                sub = (*path, key.value)
                if (key.tag, key.value) in keys and key.tag != "tag:yaml.org,2002:merge":
                    twice.append((sub, key.start_mark.line + 1))
                keys.add((key.tag, key.value))
                index[sub] = key.start_mark.line + 1
                children.append((value, sub))
            todo.extend(reversed(children))
        elif isinstance(node, yaml.SequenceNode):
            todo.extend(reversed([(item, (*path, i)) for i, item in enumerate(node.value)]))
    return index, twice


def _line_index(text: str) -> dict[Loc, int]:
    """Map each key path of the YAML document to its 1-based line."""
    return _scan(text)[0]


def _odd_key(raw: Any) -> tuple[Loc, Any] | None:
    """The first mapping key anywhere in the document that is not text (YAML allows 1:, null:, true:)."""
    todo: list[tuple[Any, Loc]] = [(raw, ())]
    walked: set[int] = set()
    while todo:
        node, path = todo.pop()
        if id(node) in walked:
            continue
        walked.add(id(node))
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    return path, key
                todo.append((value, (*path, key)))
        elif isinstance(node, list):
            todo.extend((item, (*path, i)) for i, item in enumerate(node))
    return None


def _line_for(index: dict[Loc, int], loc: tuple[str | int, ...]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in index:
            return index[loc[:n]]
    return None


def field_name(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + (part if _PLAIN_KEY.match(part) else shown(part))
    return out or "(document)"


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+\Z")


def _allowed_keys(model: type[BaseModel]) -> str:
    return ", ".join(f.alias or n for n, f in model.model_fields.items())


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    model: Any = ClusterSpec
    for part in loc:
        if isinstance(part, int):
            continue
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        if part not in fields:
            return None
        ann = fields[part].annotation
        nested = _nested_model(ann)
        if nested is None:
            return None
        model = nested
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _nested_model(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


_TYPE_WORDS = {
    "string_type": ("expected text", "quote the value"),
    "int_type": ("expected a whole number", "write a number without quotes"),
    "bool_type": ("expected true or false", "write true or false without quotes"),
    "list_type": ("expected a list", "write a YAML list (lines starting with '- ')"),
    "model_type": ("expected a mapping of keys to values", "indent 'key: value' lines under it"),
    "dict_type": ("expected a mapping of keys to values", "indent 'key: value' lines under it"),
}


def _translate(err: Any, index: dict[Loc, int]) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    field = field_name(loc)
    line = _line_for(index, loc)
    value = err.get("input")
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = _allowed_keys(parent) if parent else "see `provision init`"
        return Problem(field, "unknown key", f"allowed here: {allowed}", line)
    if kind == "missing":
        return Problem(field, "required but missing", f"add '{loc[-1]}:' (see `provision init` for an example)", line)
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return Problem(field, f"{shown(value)} is not allowed", f"use one of: {expected}", line)
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return Problem(field, f"{shown(value)} is out of range ({err['msg'].lower()})", "change the number", line)
    if kind == "too_short":
        return Problem(field, "must not be empty", "list at least one entry", line)
    if kind in _TYPE_WORDS:
        what, fix = _TYPE_WORDS[kind]
        if kind == "string_type" and isinstance(value, float) and loc[-1] == "version":
            fix = f'quote it: "{value}" (YAML reads an unquoted 1.30 as the number 1.3)'
        return Problem(field, f"{what}, got {shown(value)}", fix, line)
    return Problem(field, err["msg"], "see `provision init` for a valid example", line)


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = (exc.problem or "malformed YAML").strip()
        raise SpecError([Problem("(document)", f"malformed YAML: {what}", "fix the syntax on that line", line)],
                        source) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise SpecError([Problem("(document)", f"malformed YAML: the character U+{code:04X} is not allowed",
                                 "remove it, or write it as an escape inside double quotes", line)],
                        source) from None
    except yaml.YAMLError as exc:
        what = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise SpecError([Problem("(document)", f"malformed YAML: {what}", "fix the syntax")], source) from None
    except RecursionError:
        raise SpecError([Problem("(document)", "nested too deeply to read",
                                 "a spec is a few levels deep: remove the extra brackets or indentation")],
                        source) from None
    if raw is None:
        raise SpecError([Problem("(document)", "the file is empty", "run `provision init` for a starting spec")],
                        source)
    if not isinstance(raw, dict):
        raise SpecError([Problem("(document)", f"expected a mapping at the top, got {type(raw).__name__}",
                                 "start with 'apiVersion: provision.dev/v1alpha1' and 'kind: Cluster'", 1)], source)
    odd = _odd_key(raw)
    if odd is not None:
        path, key = odd
        where = field_name(path)
        field = f"{where}.{shown(key)}" if path else shown(key)
        raise SpecError([Problem(field, "keys must be text", "quote the key",
                                 _line_for(_line_index(text), (*path, str(key))))], source)
    return raw


def load_spec(path: str | Path) -> Cluster:
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Problem("(file)", "does not exist",
                                 "pass the spec with -f, or create one with `provision init`")], source) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        fix = "save it as UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "check the path and its permissions"
        raise SpecError([Problem("(file)", f"cannot read it: {reason}", fix)], source) from None
    return load_text(text, source, base_dir=path.parent)


def load_text(text: str, source: str = "<spec>", base_dir: Path | None = None) -> Cluster:
    raw = parse_yaml(text, source)
    index, twice = _scan(text)
    if twice:
        raise SpecError([Problem(field_name(loc), "written twice in one mapping (YAML would keep only the last)",
                                 "keep one of them", line) for loc, line in twice], source)
    merged = apply_preset(raw)
    try:
        spec = ClusterSpec.model_validate(merged)
    except ValidationError as exc:
        problems = [_translate(e, index) for e in exc.errors()]
        raise SpecError(_dedupe(problems), source) from None
    problems = check(spec)
    if problems:
        raise SpecError([Problem(p.field, p.message, p.fix, _line_for(index, _loc_of(p.field)))
                         for p in problems], source)
    return Cluster(spec=spec, base_dir=base_dir or Path.cwd(), source=source)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for p in problems:
        if p.field not in seen:
            seen.add(p.field)
            out.append(p)
    return out


def _loc_of(field: str) -> tuple[str | int, ...]:
    loc: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", field):
        loc.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(loc)


# ---------------------------------------------------------------- cross-field checks


def _network(value: str, field: str, problems: list[Problem]) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        problems.append(Problem(field, f"{shown(value)} is not a network in CIDR form",
                                "write it like 10.244.0.0/16 (host bits zero)"))
        return None
    if not isinstance(net, ipaddress.IPv4Network):
        problems.append(Problem(field, "IPv6 is not supported yet", "use an IPv4 CIDR"))
        return None
    return net


def _is_address(value: str) -> bool:
    """An IP address of one machine, or a host name."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return bool(HOSTNAME.match(value)) and not value.replace(".", "").isdigit()
    if "%" in value:
        return False  # an IPv6 scope (fe80::1%eth0) may hold any text, spaces and '$(...)' included
    return not (ip.is_unspecified or ip.is_multicast or value == "255.255.255.255")


def default_node_cidr(name: str, vagrant_backend: str | None = None) -> str:
    """A /24 per cluster name, so two local clusters do not collide: 10.250.X.0/24. VirtualBox (6.1.28+) accepts
    host-only networks only inside 192.168.56.0/21 by default, so its clusters get one of those eight /24s."""
    if vagrant_backend == "virtualbox":
        return f"192.168.{56 + zlib.crc32(name.encode()) % 8}.0/24"
    return f"10.250.{zlib.crc32(name.encode()) % 250}.0/24"


def vagrant_backend(spec: ClusterSpec) -> str | None:
    if spec.provider.type != "vagrant":
        return None
    return spec.provider.vagrant.backend if spec.provider.vagrant else "libvirt"


def refuse_load_balancer_on_api_server_port(spec: ClusterSpec, i: int, add: Callable[[Problem], None]) -> None:
    """A host that is both a control plane and a load balancer: haproxy would listen on the API server's own port."""
    host = (spec.hosts or [])[i]
    if {"control-plane", "loadbalancer"} <= set(host.roles) and spec.endpoint.port == API_SERVER_PORT:
        add(Problem(f"hosts[{i}].roles", f"{host.name} is a control plane and a load balancer: haproxy "
                    f"would take port {API_SERVER_PORT}, where its API server listens",
                    "set endpoint.port to another port (e.g. 8443), or put the load balancer on its own host"))


def containerd_source(spec: ClusterSpec) -> str:
    if spec.container_runtime.source:
        return spec.container_runtime.source
    return "artifacts" if spec.artifacts.mode == "offline" else "release"


def expected_containerd(spec: ClusterSpec) -> tuple[str, str] | None:
    """(version, where it comes from) of the containerd the nodes will run, where plan can know it."""
    if containerd_source(spec) != "distro":
        return spec.container_runtime.version or versions.CONTAINERD_VERSION, "the upstream release"
    box = spec.provider.vagrant.box if spec.provider.vagrant else None
    if spec.provider.type == "docker" or (spec.provider.type == "vagrant" and box == VagrantSpec().box):
        return versions.DEBIAN_12_CONTAINERD, "Debian 12's package"
    return None  # existing hosts or another box: the containerd role checks the package before installing


def containerd_below_floor(spec: ClusterSpec) -> tuple[str, str, str] | None:
    """(version, where it comes from, Kubernetes version) when the nodes' containerd is below the minor's floor."""
    expected = expected_containerd(spec)
    if expected is None:
        return None
    version, origin = expected
    if not PATCH_VERSION.match(version) or not VERSION.match(spec.kubernetes.version) \
            or versions.kubernetes_minor(spec.kubernetes.version) not in versions.SUPPORTED_MINORS:
        return None  # reported by the version rules
    kubernetes = versions.resolve_kubernetes(spec.kubernetes.version)
    version = version.removeprefix("v")
    return None if versions.containerd_supported(version, kubernetes) else (version, origin, kubernetes)


def below_floor_text(found: tuple[str, str, str]) -> str:
    version, origin, kubernetes = found
    return (f"containerd {version} ({origin}) is below what Kubernetes {versions.kubernetes_minor(kubernetes)} "
            f"supports ({versions.containerd_floor_text(kubernetes)})")


def refuse_containerd_below_the_floor(spec: ClusterSpec, add: Callable[[Problem], None]) -> None:
    """containerd 1.6 is end of life; each Kubernetes minor needs a floor per containerd release line."""
    found = None if spec.container_runtime.allow_unsupported_version else containerd_below_floor(spec)
    if found is None:
        return
    if spec.container_runtime.version:
        add(Problem("containerRuntime.version", below_floor_text(found), "set containerRuntime.version to a "
                    f"supported release, or remove it for {versions.CONTAINERD_VERSION}"))
    else:
        add(Problem("containerRuntime.source", below_floor_text(found),
                    f"remove containerRuntime.source to install containerd {versions.CONTAINERD_VERSION} from upstream"))


def role_counts(spec: ClusterSpec) -> dict[str, int]:
    if spec.hosts is not None:
        return {r: sum(r in h.roles for h in spec.hosts) for r in NODE_ROLES}
    n = spec.nodes or NodeCounts()
    return {"control-plane": n.control_planes, "worker": n.workers, "etcd": n.etcd,
            "loadbalancer": n.load_balancers}


def check(spec: ClusterSpec) -> list[Problem]:
    p: list[Problem] = []
    add = p.append

    if not DNS_LABEL.match(spec.name) or len(spec.name) > 40:
        add(Problem("name", f"{shown(spec.name)} is not a valid cluster name",
                    "use lowercase letters, digits and '-', at most 40 characters, e.g. 'demo'"))

    m = VERSION.match(spec.kubernetes.version)
    if not m:
        add(Problem("kubernetes.version", f"{shown(spec.kubernetes.version)} is not a version",
                    f"write a minor such as \"{versions.DEFAULT_KUBERNETES_MINOR}\" or a patch such as "
                    f"\"{versions.DEFAULT_KUBERNETES_VERSION}\""))
    elif f"{m.group(1)}.{m.group(2)}" not in versions.SUPPORTED_MINORS:
        add(Problem("kubernetes.version", f"{spec.kubernetes.version} is not supported",
                    f"use one of {', '.join(versions.SUPPORTED_MINORS)}"))

    if spec.etcd.version is not None and not PATCH_VERSION.match(spec.etcd.version):
        add(Problem("etcd.version", f"{shown(spec.etcd.version)} is not a version", "write it like \"3.6.5\""))
    runtime_version = spec.container_runtime.version
    if runtime_version is not None and not PATCH_VERSION.match(runtime_version):
        add(Problem("containerRuntime.version", f"{shown(runtime_version)} is not a version",
                    "write it like \"2.1.4\""))

    # Paths and names passed on as they are: Ansible would evaluate '{{ ... }}' in its inventory.
    bastion = spec.provider.static.bastion if spec.provider.static else None
    for field, value in (("artifacts.dir", spec.artifacts.dir),
                         ("provider.vagrant.box", spec.provider.vagrant.box if spec.provider.vagrant else None),
                         ("provider.static.bastion.key", bastion.key if bastion else None),
                         *((f"hosts[{i}].key", h.key) for i, h in enumerate(spec.hosts or []))):
        if value is not None and (not value.strip() or not value.isprintable() or TEMPLATE_MARK.search(value)):
            add(Problem(field, f"{shown(value)} is empty, or holds control characters or template markers",
                        "write a plain path or name, without '{{', '{%', '{#' or control characters"))

    provider = spec.provider.type
    before = len(p)
    if provider == "static":
        if spec.hosts is None:
            add(Problem("hosts", "the static provider needs the list of existing machines",
                        "add 'hosts:' with name, address and roles for each machine"))
        if spec.nodes is not None:
            add(Problem("nodes", "counts are for providers that create machines",
                        "remove 'nodes:' and list the machines under 'hosts:'"))
    else:
        if spec.hosts is not None:
            add(Problem("hosts", f"the {provider} provider creates its own machines",
                        "remove 'hosts:' and set counts under 'nodes:', or use provider.type: static"))
    if spec.provider.vagrant is not None and provider != "vagrant":
        add(Problem("provider.vagrant", f"settings for vagrant, but provider.type is {provider}",
                    "remove the block or set provider.type: vagrant"))
    if spec.provider.static is not None and provider != "static":
        add(Problem("provider.static", f"settings for static hosts, but provider.type is {provider}",
                    "remove the block or set provider.type: static"))

    if len(p) > before:
        return p  # without a machine list that fits the provider, role counts would only mislead

    if bastion is not None:
        if not _is_address(bastion.address):
            add(Problem("provider.static.bastion.address", f"{shown(bastion.address)} is not an IP address or "
                        "host name", "write an address such as 192.0.2.1 or a DNS name"))
        if not POSIX_USER.match(bastion.user):
            add(Problem("provider.static.bastion.user", f"{shown(bastion.user)} is not a valid user name",
                        "use a POSIX user name such as 'debian'"))

    # names and addresses of static hosts
    if spec.hosts:
        names: dict[str, int] = {}
        addrs: dict[str, int] = {}
        for i, h in enumerate(spec.hosts):
            if not DNS_LABEL.match(h.name):
                add(Problem(f"hosts[{i}].name", f"{shown(h.name)} is not a valid node name",
                            "use lowercase letters, digits and '-' (at most 63), e.g. 'cp1'"))
            if not _is_address(h.address):
                add(Problem(f"hosts[{i}].address", f"{shown(h.address)} is not an IP address or host name",
                            "write an address such as 192.0.2.10 or a DNS name"))
            if h.name in names:
                add(Problem(f"hosts[{i}].name", f"duplicate name {shown(h.name)} (also hosts[{names[h.name]}])",
                            "give every host its own name"))
            names.setdefault(h.name, i)
            key = f"{h.address}:{h.port}"
            if key in addrs:
                add(Problem(f"hosts[{i}].address", f"duplicate address {key} (also hosts[{addrs[key]}])",
                            "give every host its own address"))
            addrs.setdefault(key, i)
            if len(set(h.roles)) != len(h.roles):
                add(Problem(f"hosts[{i}].roles", "a role is listed twice", "list each role once"))
            if not POSIX_USER.match(h.user):
                add(Problem(f"hosts[{i}].user", f"{shown(h.user)} is not a valid user name",
                            "use a POSIX user name such as 'debian'"))
            refuse_load_balancer_on_api_server_port(spec, i, add)

    counts = role_counts(spec)
    cps, workers, etcds, lbs = (counts["control-plane"], counts["worker"], counts["etcd"],
                                counts["loadbalancer"])
    external = spec.etcd.mode == "external"
    nodes_field = "hosts" if spec.hosts is not None else "nodes"
    topo = spec.topology
    ep = spec.endpoint

    if cps == 0:
        add(Problem(f"{nodes_field}.controlPlanes" if nodes_field == "nodes" else "hosts",
                    "no control plane", "add at least one control-plane node"))
    if external:
        if etcds == 0:
            add(Problem(f"{nodes_field}.etcd" if nodes_field == "nodes" else "hosts",
                        "external etcd needs members, got 0",
                        "set 1, 3 or 5 etcd members, or etcd.mode: stacked"))
        elif etcds % 2 == 0:
            add(Problem(f"{nodes_field}.etcd" if nodes_field == "nodes" else "hosts",
                        f"{etcds} etcd members: an even count adds no fault tolerance and risks split votes",
                        "use an odd count: 1, 3 or 5"))
    elif etcds:
        add(Problem(f"{nodes_field}.etcd" if nodes_field == "nodes" else "hosts",
                    f"{etcds} etcd nodes but etcd.mode is stacked (etcd runs on the control planes)",
                    "set etcd.mode: external, or remove the etcd nodes"))

    if topo == "all-in-one":
        if cps != 1 or workers or etcds or lbs:
            add(Problem(nodes_field, "all-in-one is exactly one node (control plane, etcd and workloads)",
                        "remove the other nodes, or pick topology single-master"))
        if external:
            add(Problem("etcd.mode", "all-in-one runs etcd stacked on its one node", "set etcd.mode: stacked"))
    elif topo == "single-master":
        if cps != 1:
            add(Problem(nodes_field, f"single-master has one control plane, got {cps}",
                        "set one control plane, or pick multi-master or ha"))
        if workers == 0:
            add(Problem(nodes_field, "single-master needs at least one worker",
                        "add workers, or pick topology all-in-one"))
        if external and etcds > 1:
            add(Problem(nodes_field, f"single-master has one etcd member, got {etcds}",
                        "use 1 etcd node, or pick topology ha"))
    elif topo == "multi-master":
        if cps < 2:
            add(Problem(nodes_field, f"multi-master needs 2 or more control planes, got {cps}",
                        "add control planes, or pick single-master"))
        if not external:
            add(Problem("etcd.mode", "multi-master uses one external etcd node",
                        "set etcd.mode: external, or pick topology ha for stacked etcd"))
        elif etcds > 1:
            add(Problem(nodes_field, f"multi-master has one etcd member, got {etcds}",
                        "use 1 etcd node, or pick topology ha"))
    elif topo == "ha":
        if cps < 3:
            add(Problem(nodes_field, f"ha needs 3 or more control planes, got {cps}",
                        "add control planes, or pick multi-master"))
        if external and etcds and etcds % 2 and etcds < 3:
            add(Problem(nodes_field, f"ha needs 3 or 5 etcd members, got {etcds}",
                        "use 3 or 5, or pick multi-master"))
        if not external and cps % 2 == 0 and cps >= 2:
            add(Problem(nodes_field, f"stacked etcd on {cps} control planes is an even member count",
                        "use an odd number of control planes (3, 5)"))

    # the API endpoint
    if cps > 1 and ep.type == "none" and topo in ("multi-master", "ha"):
        add(Problem("endpoint.type", f"{cps} control planes need a load-balanced API endpoint",
                    "set endpoint.type to vip, local-proxy or external"))
    if ep.type == "external" and not ep.address:
        add(Problem("endpoint.address", "an external endpoint needs its address",
                    "set endpoint.address to the load balancer's IP or DNS name"))
    if ep.address is not None and not _is_address(ep.address):
        add(Problem("endpoint.address", f"{shown(ep.address)} is not an IP address or host name",
                    "write an address such as 192.0.2.100"))
    if ep.type == "vip":
        if lbs == 0:
            add(Problem(f"{nodes_field}.loadBalancers" if nodes_field == "nodes" else "hosts",
                        "a vip endpoint needs load-balancer nodes (haproxy + keepalived)",
                        "set 2 load balancers, or endpoint.type: local-proxy"))
        if provider == "static" and not ep.address:
            add(Problem("endpoint.address", "a vip on existing hosts needs a free address on their network",
                        "set endpoint.address to an unused IP in the hosts' subnet"))
        if ep.address is not None:
            try:
                ipaddress.IPv4Address(ep.address)
            except ValueError:
                add(Problem("endpoint.address", "a vip must be an IPv4 address", "write an IP such as 192.0.2.100"))
    elif lbs:
        add(Problem(f"{nodes_field}.loadBalancers" if nodes_field == "nodes" else "hosts",
                    f"load-balancer nodes are only used by endpoint.type vip (it is {ep.type})",
                    "remove them, or set endpoint.type: vip"))
    if ep.type == "local-proxy" and ep.address:
        add(Problem("endpoint.address", "local-proxy listens on every node's loopback and takes no address",
                    "remove endpoint.address"))

    # networks
    nets: dict[str, ipaddress.IPv4Network] = {}
    for field, value in (("networking.podCIDR", spec.networking.pod_cidr),
                         ("networking.serviceCIDR", spec.networking.service_cidr),
                         ("networking.nodeCIDR", spec.networking.node_cidr)):
        if value is None:
            continue
        net = _network(value, field, p)
        if net is not None:
            nets[field] = net
    fields = list(nets)
    for i, a in enumerate(fields):
        for b in fields[i + 1:]:
            if nets[a].overlaps(nets[b]):
                add(Problem(b, f"{nets[b]} overlaps {a} {nets[a]}", "pick ranges that do not overlap"))
    svc = nets.get("networking.serviceCIDR")
    if svc is not None and svc.prefixlen > 24:
        add(Problem("networking.serviceCIDR", f"{svc} is too small for cluster services", "use /24 or larger"))
    pod = nets.get("networking.podCIDR")
    if pod is not None and pod.prefixlen > 22:
        add(Problem("networking.podCIDR", f"{pod} leaves no room for per-node /24 pod ranges",
                    "use /22 or larger, e.g. 10.244.0.0/16"))
    node_net = nets.get("networking.nodeCIDR")
    if provider != "static" and spec.networking.node_cidr is None and DNS_LABEL.match(spec.name):
        # the machines get this cluster's default /24: it must hold them and stay clear of the other ranges
        node_net = ipaddress.IPv4Network(default_node_cidr(spec.name, vagrant_backend(spec)))
        for field, net in nets.items():
            if net.overlaps(node_net):
                add(Problem(field, f"{net} overlaps this cluster's default node network {node_net}",
                            "pick another range, or set networking.nodeCIDR to one that does not overlap"))
        if 100 + workers > node_net.num_addresses - 2:
            add(Problem("nodes.workers", f"{workers} workers do not fit the default node network {node_net} "
                        f"(at most {node_net.num_addresses - 102})",
                        "set networking.nodeCIDR to a larger network, e.g. a /16"))
    elif node_net is not None and provider != "static" and node_net.num_addresses - 2 < 100 + workers:
        add(Problem("networking.nodeCIDR", f"{node_net} has room for {node_net.num_addresses - 2} addresses, "
                    f"{100 + workers} are laid out", "use a larger network, e.g. a /24 or /16"))
    if node_net is not None and provider != "static" and (cps > 70 or etcds > 9 or lbs > 9):
        add(Problem(nodes_field, "too many nodes of one role for the address plan",
                    "at most 9 etcd, 9 load balancers and 70 control planes"))
    if spec.hosts:
        for i, h in enumerate(spec.hosts):
            try:
                ip = ipaddress.ip_address(h.address)
            except ValueError:
                continue
            for field, net in nets.items():
                if field != "networking.nodeCIDR" and ip in net:
                    add(Problem(f"hosts[{i}].address", f"{ip} lies inside {field} {net}",
                                f"move {field} to a range the machines do not use"))

    # add-ons and artifacts
    cni = spec.networking.cni
    if cni not in CNIS:
        add(Problem("networking.cni", f"{shown(cni)} is not a known CNI", f"use one of: {', '.join(CNIS)}"))
    elif cni in LEGACY_CNIS and not spec.networking.allow_legacy_cni:
        add(Problem("networking.cni", "weave is legacy: Weaveworks shut down and only the community fork "
                    "(rajch/weave) is maintained", "set networking.allowLegacyCNI: true to use it anyway, "
                    "or pick calico, flannel or cilium"))
    if spec.artifacts.mode == "offline" and not spec.artifacts.dir:
        add(Problem("artifacts.dir", "offline mode needs the artifacts directory",
                    "set artifacts.dir (build it with `provision artifacts`)"))
    if spec.dashboard.type == "none" and spec.dashboard.access != "read-only":
        add(Problem("dashboard.access", "access is set but no dashboard is installed",
                    "remove dashboard.access or pick a dashboard"))
    refuse_containerd_below_the_floor(spec, add)
    for field, source in (("containerRuntime.source", spec.container_runtime.source),
                          ("etcd.source", spec.etcd.source)):
        if source == "artifacts" and spec.artifacts.mode != "offline":
            add(Problem(field, "installs from artifacts, but artifacts.mode is online",
                        "set artifacts.mode: offline and artifacts.dir"))
    return p


# ---------------------------------------------------------------- the resolved cluster


@dataclass(frozen=True)
class Cluster:
    """A spec that passed every check, with the preset filled in."""

    spec: ClusterSpec
    base_dir: Path
    source: str = "<spec>"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kubernetes_version(self) -> str:
        return versions.resolve_kubernetes(self.spec.kubernetes.version)

    @property
    def containerd_source(self) -> str:
        return containerd_source(self.spec)

    @property
    def containerd_version(self) -> str | None:
        """The upstream version a release/artifacts install uses; None for the distribution's package."""
        if self.containerd_source == "distro":
            return None
        return (self.spec.container_runtime.version or versions.CONTAINERD_VERSION).removeprefix("v")

    @property
    def etcd_version(self) -> str:
        if self.spec.etcd.version:
            return self.spec.etcd.version.removeprefix("v")
        return versions.ETCD_FOR_KUBERNETES[versions.kubernetes_minor(self.kubernetes_version)]

    def path(self, value: str) -> Path:
        """A path from the spec, relative to the spec file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)


def warnings_for(spec: ClusterSpec) -> list[str]:
    """Things that are allowed but that a person should know about."""
    out = []
    if spec.networking.cni == "weave":
        out.append("networking.cni: weave is legacy (Weaveworks shut down); using the community fork rajch/weave")
    if spec.dashboard.type == "kubernetes-dashboard":
        out.append("dashboard.type: kubernetes-dashboard was archived upstream in 2026-01; headlamp is its successor")
    if spec.dashboard.access == "admin" and spec.dashboard.type != "none":
        out.append("dashboard.access: admin gives the dashboard's service account cluster-admin")
    if spec.container_runtime.allow_unsupported_version and (found := containerd_below_floor(spec)):
        out.append(f"containerRuntime: {below_floor_text(found)}; allowUnsupportedVersion is set")
    if spec.endpoint.type == "vip" and role_counts(spec)["loadbalancer"] == 1:
        out.append("endpoint: one load-balancer node holds the VIP alone; add a second for failover")
    return out
