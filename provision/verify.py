"""Verify: is the cluster really working? Nodes, system pods, DNS and service traffic across nodes.

Talks to the API server with the admin kubeconfig from the state dir (the kubernetes client). The workload
checks run agnhost (Kubernetes' own e2e test image) in a scratch namespace that is removed afterwards:
- DNS: a pod resolves kubernetes.default through CoreDNS;
- service: a Deployment of 2 replicas spread over 2 nodes answers through its ClusterIP Service, asked by a
  pod on another node than at least one replica, via the API server's pod proxy (no exec needed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from provision import versions

AGNHOST = versions.AGNHOST_IMAGE
NAMESPACE = "provision-verify"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


class Api(Protocol):
    """The few calls verify makes; `KubeApi` implements them with the kubernetes client."""

    def nodes(self) -> list[dict[str, Any]]: ...
    def pods(self, namespace: str) -> list[dict[str, Any]]: ...
    def apply(self, manifest: dict[str, Any]) -> None: ...
    def proxy_get(self, namespace: str, pod: str, port: int, path: str, query: list[tuple[str, str]]) -> str: ...
    def namespace_exists(self, name: str) -> bool: ...
    def delete_namespace(self, name: str) -> None: ...


def _ready(node: dict[str, Any]) -> bool:
    for cond in node.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def check_nodes(api: Api, expected: list[str]) -> Check:
    nodes = {n["metadata"]["name"]: n for n in api.nodes()}
    missing = sorted(set(expected) - set(nodes))
    not_ready = sorted(n for n in expected if n in nodes and not _ready(nodes[n]))
    if missing or not_ready:
        parts = ([f"missing: {', '.join(missing)}"] if missing else []) + (
            [f"not Ready: {', '.join(not_ready)}"] if not_ready else [])
        return Check("nodes Ready", False, "; ".join(parts))
    return Check("nodes Ready", True, f"{len(expected)}/{len(expected)} Ready")


def _pod_healthy(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    phase = status.get("phase")
    if phase == "Succeeded":
        return True
    return phase == "Running" and all(c.get("ready") for c in status.get("containerStatuses", []) or [])


def check_system_pods(api: Api) -> Check:
    pods = api.pods("kube-system")
    if not pods:
        return Check("kube-system pods", False, "no pods in kube-system")
    bad = sorted(p["metadata"]["name"] for p in pods if not _pod_healthy(p))
    if bad:
        return Check("kube-system pods", False, f"not Running/Completed: {', '.join(bad)}")
    return Check("kube-system pods", True, f"{len(pods)} Running or Completed")


def workload_manifests(replicas: int) -> list[dict[str, Any]]:
    labels = {"app": "provision-verify"}
    container = {"name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                 "ports": [{"containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 2}}
    spread = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}]}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NAMESPACE},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"affinity": spread, "containers": [container]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NAMESPACE},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": NAMESPACE,
                                                         "labels": {"app": "provision-verify-client"}},
         "spec": {"containers": [dict(container, name="client")]}},
    ]


def wait_namespace_gone(api: Api, name: str, timeout: float = 120,
                        sleep: Callable[[float], None] = time.sleep) -> None:
    """A namespace being deleted (an earlier verify's) refuses new content with 403 until it is gone."""
    deadline = time.monotonic() + timeout
    while api.namespace_exists(name):
        if time.monotonic() > deadline:
            raise TimeoutError(f"namespace {name} is still being deleted after {timeout:.0f}s")
        sleep(1)


def agnhost_output(raw: str) -> str:
    """agnhost netexec's /shell answers {"output": ..., "error": ...}."""
    try:
        answer = json.loads(raw)
    except ValueError:
        return raw
    return f"{answer.get('output', '')}{answer.get('error', '')}" if isinstance(answer, dict) else raw


def check_workloads(api: Api, schedulable: int, timeout: float = 300,
                    sleep: Callable[[float], None] = time.sleep) -> list[Check]:
    replicas = 2 if schedulable >= 2 else 1
    wait_namespace_gone(api, NAMESPACE, sleep=sleep)
    for manifest in workload_manifests(replicas):
        api.apply(manifest)
    deadline = time.monotonic() + timeout
    pods: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        pods = api.pods(NAMESPACE)
        if len(pods) == replicas + 1 and all(_pod_healthy(p) for p in pods):
            break
        sleep(2)
    else:
        waiting = sorted(p["metadata"]["name"] for p in pods if not _pod_healthy(p))
        fail = f"pods not ready after {timeout:.0f}s: {', '.join(waiting) or 'none created'}"
        return [Check("DNS", False, fail), Check("service traffic", False, fail)]
    web_nodes = {p["spec"].get("nodeName") for p in pods if p["metadata"]["name"] != "client"}
    client_node = next(p["spec"].get("nodeName") for p in pods if p["metadata"]["name"] == "client")
    checks = []
    dns = agnhost_output(api.proxy_get(NAMESPACE, "client", 8080, "shell", [("cmd", "nslookup kubernetes.default")]))
    resolved = "kubernetes.default" in dns and "NXDOMAIN" not in dns and "can't" not in dns
    checks.append(Check("DNS", resolved, "kubernetes.default resolves" if resolved else f"lookup failed: {dns[:200]}"))
    host = f"web.{NAMESPACE}.svc.cluster.local"
    raw = api.proxy_get(NAMESPACE, "client", 8080, "dial", [
        ("request", "hostname"), ("protocol", "http"), ("host", host), ("port", "80"), ("tries", "10")])
    try:
        answers = set(json.loads(raw).get("responses") or [])
    except ValueError:
        answers = set()
    spread = len(web_nodes) == replicas
    other_node = bool(web_nodes - {client_node})
    ok = bool(answers) and spread and (other_node or replicas == 1)
    detail = (f"{len(answers)} replica(s) answered via ClusterIP from {client_node}; replicas on "
              f"{', '.join(sorted(n for n in web_nodes if n))}")
    checks.append(Check("service traffic", ok, detail if answers else f"no answer through the Service: {raw[:200]}"))
    return checks


def run(api: Api, expected_nodes: list[str], schedulable: int, workloads: bool = True) -> list[Check]:
    checks = [check_nodes(api, expected_nodes), check_system_pods(api)]
    if workloads:
        try:
            checks += check_workloads(api, schedulable)
        finally:
            api.delete_namespace(NAMESPACE)
    return checks


def api_errors() -> tuple[type[BaseException], ...]:
    """What talking to an API server can raise: its answers, config problems, the network."""
    import urllib3
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    return (ApiException, ConfigException, urllib3.exceptions.HTTPError, OSError, ValueError, KeyError)


class KubeApi:
    """The real thing: the kubernetes client with the cluster's admin kubeconfig."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import client, config, utils

        self._client = client
        self._utils = utils
        self._api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        self._core = client.CoreV1Api(self._api)

    def nodes(self) -> list[dict[str, Any]]:
        return [self._api.sanitize_for_serialization(n) for n in self._core.list_node().items]

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        return [self._api.sanitize_for_serialization(p) for p in self._core.list_namespaced_pod(namespace).items]

    def apply(self, manifest: dict[str, Any]) -> None:
        try:
            self._utils.create_from_dict(self._api, manifest)  # type: ignore[no-untyped-call]
        except self._utils.FailToCreateError as exc:
            if not all(getattr(e, "status", None) == 409 for e in exc.api_exceptions):
                raise

    def proxy_get(self, namespace: str, pod: str, port: int, path: str, query: list[tuple[str, str]]) -> str:
        """GET through the API server's pod proxy with a query string. The generated
        connect_get_namespaced_pod_proxy_with_path percent-encodes its path argument ('?' and '=' too), so a query
        written into it reaches the pod as part of the path: the request is built here instead."""
        resource = f"/api/v1/namespaces/{{namespace}}/pods/{{name}}/proxy/{path}"
        params = {"namespace": namespace, "name": f"{pod}:{port}"}
        headers = {"Accept": "*/*"}
        if hasattr(self._api, "param_serialize"):  # kubernetes >= 37
            request = self._api.param_serialize(method="GET", resource_path=resource, path_params=params,
                                                query_params=query, header_params=headers,
                                                auth_settings=["BearerToken"])
            response = self._api.call_api(*request, _request_timeout=60)
            response.read()
            if not 200 <= response.status < 300:
                raise self._client.exceptions.ApiException(status=response.status, reason=response.reason)
            return bytes(response.data).decode(errors="replace")
        response = self._api.call_api(resource, "GET", path_params=params, query_params=query,
                                      header_params=headers, auth_settings=["BearerToken"],
                                      _preload_content=False, _return_http_data_only=True, _request_timeout=60)
        return bytes(response.data).decode(errors="replace")

    def namespace_exists(self, name: str) -> bool:
        try:
            self._core.read_namespace(name)
        except self._client.exceptions.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def delete_namespace(self, name: str) -> None:
        try:
            self._core.delete_namespace(name)
        except self._client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise
