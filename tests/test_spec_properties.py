"""Hostile input, property-based: generated specs and mutations of them, thrown at the validator.

Properties:
- `spec.load_text` either returns a `Cluster` or raises `SpecError`; nothing else ever escapes it;
- every rejection line is exactly one printable line that starts with the source, names a field and says how
  to fix it after '; ';
- every accepted spec renders an inventory that parses, lists every node under its verbatim name and address,
  and carries no name, address or user that could inject anything (RFC 1123 labels, IPs or host names, POSIX
  user names; no spaces, quotes, ';', '$', backticks, newlines or Jinja);
- `provision plan` on a sample of rejected specs exits 2 with one `error:` line per problem and no traceback.

Deterministic (derandomized, no example database) and sized to run in well under a minute on 2 cores.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from provision import inventory, spec, steps, topology, versions

SOURCE = "specs/cluster.yaml"
RFC1123_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
HOST_NAME = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
POSIX_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
INJECTION = re.compile(r"[\s'\"`;$&|<>(){}\\*?!#%]")
LINE = re.compile(r"^(?P<source>[^:]+)(:\d+)?: (?P<field>[^ ].*?): (?P<message>.+?); (?P<fix>.+)$")

COMMON = {"derandomize": True, "database": None, "deadline": None,
          "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much,
                                    HealthCheck.data_too_large]}

# ---------------------------------------------------------------- outcomes and their properties


def outcome(text: str) -> spec.Cluster | None:
    """Validate; check the properties of whatever came out. Any exception but SpecError fails the test."""
    try:
        cluster = spec.load_text(text, SOURCE)
    except spec.SpecError as exc:
        check_rejection(exc)
        return None
    check_accepted(cluster)
    return cluster


def check_rejection(exc: spec.SpecError) -> None:
    lines = exc.lines()
    assert lines, "a SpecError without a problem"
    assert str(exc).splitlines() == lines
    for problem, line in zip(exc.problems, lines, strict=True):
        assert line.splitlines() == [line], f"not exactly one line: {line!r}"
        assert line.isprintable(), f"control characters reach the terminal: {line!r}"
        assert line.startswith(SOURCE + ":"), line
        m = LINE.match(line)
        assert m, f"not 'source[:line]: field: problem; fix': {line!r}"
        assert problem.field and problem.field in line, line
        assert problem.fix.strip(), f"no fix: {line!r}"
        assert len(line) < 1000, f"an unreadably long line ({len(line)} characters)"


def is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return bool(HOST_NAME.fullmatch(value))
    return "%" not in value


def check_accepted(cluster: spec.Cluster) -> None:
    s = cluster.spec
    assert RFC1123_LABEL.fullmatch(s.name) and len(s.name) <= 40, repr(s.name)
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", cluster.kubernetes_version), cluster.kubernetes_version
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", cluster.etcd_version), cluster.etcd_version
    if s.container_runtime.version is not None:
        assert re.fullmatch(r"v?[0-9]+\.[0-9]+\.[0-9]+", s.container_runtime.version)
    bastion = s.provider.static.bastion if s.provider.static else None
    if bastion is not None:
        assert is_address(bastion.address) and POSIX_USER.fullmatch(bastion.user), bastion
    spec.warnings_for(s)
    topo = topology.build(cluster)
    steps.steps_for(topo)
    files = inventory.render(topo)
    hosts_text = files["inventory/hosts.yml"]
    parsed = yaml.safe_load(hosts_text)
    group_vars = yaml.safe_load(files["inventory/group_vars/all.yml"])
    hosts = parsed["all"]["hosts"]
    assert list(hosts) == [n.name for n in topo.nodes]
    node_net = ipaddress.ip_network(topo.node_cidr) if topo.node_cidr else None
    for n in topo.nodes:
        assert RFC1123_LABEL.fullmatch(n.name), repr(n.name)
        assert is_address(n.address) and not INJECTION.search(n.address), repr(n.address)
        assert POSIX_USER.fullmatch(n.user), repr(n.user)
        # verbatim, and quoted: YAML would read a bare 0, 0x1f, null or yes as something else than the name
        assert f'\n    "{n.name}":\n' in hosts_text
        assert hosts[n.name]["node_ip"] == n.address and hosts[n.name]["ansible_user"] == n.user
        for group in topo.groups.values():
            assert all(m in hosts for m in group)
        if node_net is not None:
            assert ipaddress.ip_address(n.address) in node_net, (n.address, node_net)
    if topo.endpoint_host:
        assert is_address(topo.endpoint_host), repr(topo.endpoint_host)
    for key, value in group_vars.items():
        if isinstance(value, str) and key != "provision_state_dir":
            # Ansible templates inventory strings: Jinja from the spec would run on the control node.
            assert value.isprintable() and not re.search(r"\{\{|\{%|\{#", value), (key, value)
    if node_net is not None:
        for field in ("pod_cidr", "service_cidr"):
            assert not node_net.overlaps(ipaddress.ip_network(group_vars[field])), field


# ---------------------------------------------------------------- valid specs


def _net(base: str, low: int, high: int) -> st.SearchStrategy[str]:
    """A random IPv4 network inside `base` with a prefix length in [low, high]."""
    outer = ipaddress.IPv4Network(base)

    @st.composite
    def draw(data: st.DrawFn) -> str:
        prefix = data(st.integers(low, high))
        offset = data(st.integers(0, outer.num_addresses - 1))
        address = ipaddress.IPv4Address(int(outer.network_address) + offset)
        return str(ipaddress.IPv4Network((address, prefix), strict=False))

    return draw()


NAMES = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
USERS = st.from_regex(r"[a-z_][a-z0-9_.-]{0,31}", fullmatch=True)
HOSTNAMES = st.lists(NAMES, min_size=1, max_size=4).map(".".join).filter(
    lambda h: not h.replace(".", "").isdigit())
VERSIONS = st.sampled_from(versions.SUPPORTED_MINORS).flatmap(
    lambda m: st.sampled_from([m, f"v{m}", f"{m}.0", f"v{m}.7", versions.KUBERNETES_PATCHES[m]]))


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A spec that satisfies every rule: topology, provider, counts, endpoint, networks, add-ons."""
    topo = draw(st.sampled_from(spec.TOPOLOGIES))
    static = draw(st.booleans())
    name = draw(NAMES.filter(lambda n: len(n) <= 16))
    d: dict[str, Any] = {"apiVersion": spec.API_VERSION, "kind": "Cluster", "name": name, "topology": topo}

    if topo == "all-in-one":
        cps, etcd_mode, etcds = 1, "stacked", 0
        endpoint = draw(st.sampled_from(["none", "local-proxy"]))
    elif topo == "single-master":
        cps = 1
        etcd_mode = draw(st.sampled_from(["stacked", "external"]))
        etcds = 1 if etcd_mode == "external" else 0
        endpoint = draw(st.sampled_from(["none", "local-proxy", "vip", "external"]))
    elif topo == "multi-master":
        cps, etcd_mode, etcds = draw(st.integers(2, 6)), "external", 1
        endpoint = draw(st.sampled_from(["local-proxy", "vip", "external"]))
    else:
        etcd_mode = draw(st.sampled_from(["stacked", "external"]))
        if etcd_mode == "stacked":
            cps, etcds = draw(st.sampled_from([3, 5, 7])), 0
        else:
            cps, etcds = draw(st.integers(3, 8)), draw(st.sampled_from([3, 5]))
        endpoint = draw(st.sampled_from(["local-proxy", "vip", "external"]))
    workers = draw(st.integers(1 if topo == "single-master" else 0, 40)) if topo != "all-in-one" else 0
    lbs = draw(st.integers(1, 4)) if endpoint == "vip" else 0

    pod = draw(_net("10.0.0.0/9", 9, 22))
    service = draw(_net("172.16.0.0/12", 12, 24))
    networking: dict[str, Any] = {"podCIDR": pod, "serviceCIDR": service}
    cni = draw(st.sampled_from(spec.CNIS))
    networking["cni"] = cni
    if cni in spec.LEGACY_CNIS:
        networking["allowLegacyCNI"] = True

    if static:
        d["provider"] = {"type": "static"}
        plan = (["control-plane"] * cps + ["etcd"] * etcds + ["loadbalancer"] * lbs
                + ["worker"] * min(workers, 12))
        names = draw(st.lists(NAMES, min_size=len(plan), max_size=len(plan), unique=True))
        pool = ipaddress.IPv4Network(draw(st.sampled_from(["192.0.2.0/24", "198.51.100.0/24", "100.64.0.0/10"])))
        picks = draw(st.lists(st.integers(1, min(pool.num_addresses - 2, 10_000)), min_size=len(plan),
                              max_size=len(plan), unique=True))
        hosts = []
        for role, host_name, pick in zip(plan, names, picks, strict=True):
            host: dict[str, Any] = {"name": host_name, "roles": [role]}
            host["address"] = (draw(HOSTNAMES.map(lambda h, p=pick: f"{h}.n{p}"))
                               if draw(st.booleans()) else str(pool.network_address + pick))
            if draw(st.booleans()):
                host["user"] = draw(USERS)
            if draw(st.booleans()):
                host["port"] = draw(st.integers(1, 65535))
            hosts.append(host)
        d["hosts"] = hosts
        if draw(st.booleans()):
            d["provider"]["static"] = {"bastion": {"address": draw(st.one_of(HOSTNAMES, st.just("203.0.113.7"))),
                                                   "user": draw(USERS)}}
    else:
        if draw(st.booleans()):
            d["provider"] = {"type": "docker"}
        d["nodes"] = {"controlPlanes": cps, "workers": workers, "etcd": etcds, "loadBalancers": lbs}
        if draw(st.booleans()):
            networking["nodeCIDR"] = draw(_net("192.168.0.0/16", 16, 24))
    d["networking"] = networking
    d["etcd"] = {"mode": etcd_mode}

    ep: dict[str, Any] = {"type": endpoint}
    if endpoint == "external":
        ep["address"] = draw(st.one_of(HOSTNAMES, st.just("203.0.113.10")))
    elif endpoint == "vip" and static:
        ep["address"] = "203.0.113.5"
    if draw(st.booleans()):
        ep["port"] = draw(st.integers(1, 65535))
    d["endpoint"] = ep

    if draw(st.booleans()):
        d["kubernetes"] = {"version": draw(VERSIONS)}
    if draw(st.booleans()):
        # supported for every minor; Debian 12's package (docker nodes, the default box) only when allowed
        d["containerRuntime"] = draw(st.sampled_from([{"source": "distro", "allowUnsupportedVersion": True},
                                                       {"source": "release", "version": "2.3.4"},
                                                       {"source": "release", "version": "v2.2.7"}]))
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["headlamp", "kubernetes-dashboard", "none"]))
        d["dashboard"] = {"type": kind} if kind == "none" else {
            "type": kind, "access": draw(st.sampled_from(["read-only", "admin"]))}
    if draw(st.booleans()):
        d["artifacts"] = {"mode": "offline", "dir": draw(st.sampled_from(["./artifacts", "/srv/a b/art", "~/x"]))}
    return d


def dump(d: Any) -> str:
    return yaml.safe_dump(d, sort_keys=False, allow_unicode=True, width=10_000)


@settings(max_examples=150, **COMMON)  # type: ignore[arg-type]
@given(valid_specs())
def test_valid_specs_are_accepted_and_render_safely(d: dict[str, Any]) -> None:
    cluster = outcome(dump(d))
    assert cluster is not None, dump(d)
    topo = topology.build(cluster)
    want = (len(d["hosts"]) if "hosts" in d
            else sum(d["nodes"].values()))
    assert len(topo.nodes) == want


# ---------------------------------------------------------------- mutations of valid specs

SHELL = ["x; rm -rf /", "$(reboot)", "`id`", "a && b", "a | b", "a > /etc/passwd", "$HOME", "${IFS}", "a'b",
         'a"b', "a\\b", "*", "?", "~", "!", "#x", "-oProxyCommand=id", "--help"]
ODD_TEXT = ["", " ", "a b", "a\nb", "cp1\n", "\ncp1", "cp1\r", "\t", "\x00", "\x07", "\x1b[31mred\x1b[0m",
            "\u2028", "\u0085", "\ufeff", "\u202eevil", "..", "-", "-cp1", "cp1-", "cp1 ", " cp1", "CP1", "cp_1",
            "cp.1", "a" * 63, "a" * 64, "a" * 300, "é", "节点", "1.37\n", "1.37.\u0663", "\u0661.37", "v1.37 ",
            "1.37.0-rc.1", "01.037", "192.0.2.10\n", "192.0.2.10 ", "192.0.2.\u0661", "fe80::1%eth0",
            "fe80::1%$(id)", "::1", "0.0.0.0", "255.255.255.255", "1.2.3.4.5", "999.1.1.1", "1.2.3",
            "10.244.0.0/33", "10.96.0.1/12", "::/0", "0.0.0.0/0", "10.0.0.0/8", "10.250.0.0/16",
            "{{ lookup('pipe', 'id') }}", "{% raw %}", "{# #}", "null", "~", "yes", "no", "../../etc/passwd",
            "calico ", "Calico", "static", "vip", "ha", "provision.dev/v1alpha1 "]
TEXT = st.one_of(st.sampled_from(ODD_TEXT + SHELL), st.text(max_size=20),
                 st.text(st.characters(codec="ascii"), max_size=12))
SCALARS = st.one_of(
    TEXT,
    st.integers(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.sampled_from([0, -1, 1, 2, 3, 4, 5, 9, 10, 99, 100, 5000, 5001, 65535, 65536, 2**31, 2**63, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.binary(max_size=8),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(TEXT, st.integers(), st.booleans(), st.none()),
                                                 inner, max_size=3)), max_leaves=6)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated_specs(draw: st.DrawFn, rounds: int = 3) -> dict[str, Any]:
    """A valid spec with 1..rounds mutations: drop, replace, add an unknown key, wrap, duplicate list items."""
    d = copy.deepcopy(draw(valid_specs()))
    for _ in range(draw(st.integers(1, rounds))):
        paths = [p for p in _paths(d) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _get(d, path[:-1]), path[-1]
        op = draw(st.sampled_from(["drop", "replace", "replace", "replace", "add", "wrap", "repeat"]))
        if op == "drop":
            del parent[last]
        elif op == "replace":
            parent[last] = draw(VALUES)
        elif op == "add":
            target = _get(d, path) if isinstance(_get(d, path), dict) else d
            target[draw(st.one_of(TEXT, st.integers(), st.none(), st.booleans()))] = draw(VALUES)
        elif op == "wrap":
            parent[last] = draw(st.sampled_from([[parent[last]], {"value": parent[last]}, [[[parent[last]]]]]))
        elif op == "repeat" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
    return d


@settings(max_examples=400, **COMMON)  # type: ignore[arg-type]
@given(mutated_specs())
def test_mutated_specs_are_rejected_cleanly_or_accepted_safely(d: dict[str, Any]) -> None:
    outcome(dump(d))


# Every field a spec value reaches a shell, a template, a file path or an SSH command through, with every
# hostile value above: a plain grid, so none of them depends on what the generator happens to draw.
STATIC = {"apiVersion": spec.API_VERSION, "kind": "Cluster", "name": "demo", "topology": "single-master",
          "provider": {"type": "static", "static": {"bastion": {"address": "203.0.113.7", "user": "jump"}}},
          "hosts": [{"name": "cp1", "address": "192.0.2.10", "roles": ["control-plane"], "user": "debian",
                     "key": "keys/id"},
                    {"name": "w1", "address": "node-w1.example.net", "roles": ["worker"]}],
          "endpoint": {"type": "external", "address": "api.example.net"},
          "etcd": {"mode": "external", "version": "3.6.5"},
          "containerRuntime": {"source": "release", "version": "2.3.4"},
          "artifacts": {"mode": "offline", "dir": "./artifacts"}}
STATIC["hosts"].append({"name": "e1", "address": "192.0.2.30", "roles": ["etcd"]})
FIELDS = [("name",), ("hosts", 0, "name"), ("hosts", 0, "address"), ("hosts", 0, "user"), ("hosts", 0, "key"),
          ("hosts", 1, "address"), ("provider", "static", "bastion", "address"),
          ("provider", "static", "bastion", "user"), ("provider", "static", "bastion", "key"),
          ("endpoint", "address"), ("kubernetes", "version"), ("etcd", "version"),
          ("containerRuntime", "version"), ("artifacts", "dir"), ("networking", "podCIDR"),
          ("networking", "serviceCIDR"), ("networking", "cni"), ("topology",), ("apiVersion",)]


def test_hostile_values_in_every_sensitive_field() -> None:
    assert outcome(dump(STATIC)) is not None
    docker = {"apiVersion": spec.API_VERSION, "kind": "Cluster", "name": "demo", "topology": "single-master",
              "networking": {"nodeCIDR": "192.168.7.0/24"}}
    assert outcome(dump(docker)) is not None
    for path in [*FIELDS, ("networking", "nodeCIDR")]:
        for value in ODD_TEXT + SHELL:
            d = copy.deepcopy(docker if path == ("networking", "nodeCIDR") else STATIC)
            parent = d
            for part in path[:-1]:
                parent = parent[part] if isinstance(parent, list) else parent.setdefault(part, {})
            parent[path[-1]] = value
            accepted = outcome(dump(d)) is not None
            # file paths may hold spaces and '$' (they are passed as single arguments, never through a shell)
            assert not (accepted and value in SHELL and path[-1] not in ("key", "dir")), (path, value)


# ---------------------------------------------------------------- YAML oddities, at the text level

BASE = "apiVersion: provision.dev/v1alpha1\nkind: Cluster\nname: demo\ntopology: single-master\n"
LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
ODDITIES = [
    "x: !!python/object:os.system ls\n", "x: !!python/object/apply:os.system [ls]\n",
    "name: !!python/name:os.system\n", "name: !!binary aGVsbG8=\n", "name: !!binary '%%%'\n",
    "x: !!set {a, b}\n", "x: 2024-13-01\n", "x: !!timestamp 2024-02-30\n", "x: !!int 0x\n", "x: !!float abc\n",
    "name: !custom demo\n", "x: !!omap [a: 1]\n", "x: !!pairs [a: 1]\n", "<<: {kind: Pod}\n", "<<: 1\n",
    "name: other\n", "kind: Cluster\n", "topology: ha\n", "nodes: {workers: 1, workers: 2}\n",
    "1: one\n", "null: nothing\n", "true: yes\n", "1.5: x\n", "2024-01-01: x\n", "? [a, b]\n: x\n",
    "? {a: 1}\n: x\n", "nodes: {1: 1}\n", "nodes: {null: 1}\n", "hosts: [{1: 2}]\n",
    "a: &a [1, 2]\nb: *a\n", "nodes: &n {workers: 3}\nnetworking: *n\n", "x: *undefined\n",
    "l0: &l0 [lol]\n" + LAUGHS + "hosts: *l9\n", "l0: &l0 [lol]\n" + LAUGHS + "topology: *l9\n",
    "l0: &l0 [lol]\n" + LAUGHS + "nodes: {workers: *l9}\n", "l0: &l0 {a: b}\n" + LAUGHS,
    "hosts: &r [*r]\n", "topology: &r [*r]\n", "nodes: &r {workers: *r}\n", "x: &r {a: *r}\n",
    "nodes: {workers: " + "9" * 5000 + "}\n", "nodes: {workers: 0x" + "f" * 5000 + "}\n",
    "name: 0b" + "1" * 20000 + "\n", "nodes: {workers: " + "9" * 4000 + "}\n", "nodes: {workers: 1e400}\n",
    "nodes: {workers: .nan}\n", "nodes: {workers: -.inf}\n", "nodes: {workers: 0o777}\n",
    "nodes: {workers: 1_000}\n", "nodes: {workers: 0x10}\n", "nodes: {workers: 2.0}\n",
    "x: " + "[" * 700 + "]" * 700 + "\n", "x: " + "{a: " * 3000 + "b" + "}" * 3000 + "\n",
    "nodes: " + "[" * 200 + "]" * 200 + "\n", "hosts:\n" + "".join("  " * i + "- \n" for i in range(1, 300)),
    "---\nname: other\n", "...\n", "--- !!str\n", "%YAML 1.1\n---\n", "%TAG ! tag:evil:\n---\n",
    "\tnodes: 1\n", "nodes:\n\tworkers: 1\n", "name: 'unterminated\n", "name: \"a\\xZZ\"\n",
    "name: \"\\x00\"\n", "name: \"\\e[31m\"\n", "name: \"\\u2028\"\n", "name: \"\\N\"\n", "\x00\n", "\x1b\n",
    "\ufeffname: x\n", "name: \ud800\n", "x: \x85\n", "\r\nname: x\r\n", "\r", "{", "}", "[", "]", ":", "- a\n",
    "? \n", "&a\n", "*a\n", "!\n", "|\n  block\n", ">-\n  folded\n", "name: |\n  demo\n", "name: >\n  demo\n",
]


@st.composite
def odd_documents(draw: st.DrawFn) -> str:
    """BASE or a dumped valid spec, with YAML oddities prepended, appended, or spliced in at a line."""
    text = draw(st.one_of(st.just(BASE), valid_specs().map(dump)))
    for _ in range(draw(st.integers(1, 2))):
        odd = draw(st.one_of(st.sampled_from(ODDITIES), st.text(max_size=40)))
        where = draw(st.sampled_from(["end", "start", "splice", "replace"]))
        lines = text.splitlines(keepends=True)
        if where == "end":
            text = text + odd
        elif where == "start":
            text = odd + text
        elif where == "splice":
            at = draw(st.integers(0, len(lines)))
            text = "".join(lines[:at]) + odd + "".join(lines[at:])
        else:
            at = draw(st.integers(0, max(len(lines) - 1, 0)))
            text = "".join(lines[:at]) + odd + "".join(lines[at + 1:])
    return text


@settings(max_examples=250, **COMMON)  # type: ignore[arg-type]
@given(odd_documents())
def test_yaml_oddities_never_crash_the_validator(text: str) -> None:
    outcome(text)


@settings(max_examples=60, **COMMON)  # type: ignore[arg-type]
@given(st.sampled_from(ODDITIES), st.sampled_from(["end", "start"]))
def test_every_listed_oddity(odd: str, where: str) -> None:
    outcome(BASE + odd if where == "end" else odd + BASE)


def test_duplicate_keys_are_rejected_with_their_line() -> None:
    with_dup = BASE + "nodes:\n  workers: 1\n  workers: 2\n"
    try:
        spec.load_text(with_dup, SOURCE)
    except spec.SpecError as exc:
        [line] = exc.lines()
        assert line.startswith(f"{SOURCE}:7: nodes.workers: ") and "twice" in line
    else:
        raise AssertionError("a duplicate key was accepted (the first value would be silently lost)")


# ---------------------------------------------------------------- the command line, on a sample


@settings(max_examples=20, **COMMON)  # type: ignore[arg-type]
@given(st.one_of(mutated_specs(rounds=2).map(dump).map(str.encode), odd_documents().map(
    lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=40)))
def test_plan_exits_2_with_one_line_per_problem(tmp_path_factory: Any, data: bytes) -> None:
    try:
        spec.load_text(data.decode("utf-8", "strict"), SOURCE)
        accepted = True
    except (spec.SpecError, UnicodeDecodeError):
        accepted = False
    assume(not accepted)
    work: Path = tmp_path_factory.mktemp("plan")
    path = work / "cluster.yaml"
    path.write_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "provision", "plan", "-f", str(path)], check=False,
                          capture_output=True, text=True, cwd=work,
                          env={"PROVISION_STATE_DIR": str(work / "state"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    errors = proc.stderr.splitlines()
    assert errors and all(e.startswith(f"error: {path}:") and "; " in e for e in errors), proc.stderr
    assert not (work / "state").exists()
