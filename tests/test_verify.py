"""`provision verify`'s decisions, against an in-memory API server DOUBLE (no API server can run here).

The double keeps the objects verify applies and plays a scheduler and kubelet that the test scripts: which
nodes are Ready, which pods run where, what the client pod's agnhost answers through the pod proxy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from provision import verify
from tests.doubles import http_apiserver


class FakeApi:
    """API server DOUBLE for verify's tests only."""

    def __init__(self, nodes: dict[str, bool], system: dict[str, str], web_nodes: list[str], client_node: str,
                 dns: str = "Name: kubernetes.default.svc.cluster.local\nAddress: 10.96.0.1",
                 answers: list[str] | None = None) -> None:
        self._nodes, self._system = nodes, system
        self._web_nodes, self._client_node = web_nodes, client_node
        self._dns = dns
        self._answers = answers if answers is not None else [f"web-{i}" for i in range(len(web_nodes))]
        self.applied: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    def nodes(self) -> list[dict[str, Any]]:
        return [{"metadata": {"name": n}, "status": {"conditions": [{"type": "Ready",
                                                                     "status": "True" if ok else "False"}]}}
                for n, ok in self._nodes.items()]

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        def pod(name: str, phase: str, node: str = "") -> dict[str, Any]:
            return {"metadata": {"name": name}, "spec": {"nodeName": node},
                    "status": {"phase": phase, "containerStatuses": [{"ready": phase == "Running"}]}}
        if namespace == "kube-system":
            return [pod(n, phase) for n, phase in self._system.items()]
        deployment = next((m for m in self.applied if m["kind"] == "Deployment"), None)
        if deployment is None:
            return []
        replicas = deployment["spec"]["replicas"]
        return [pod(f"web-{i}", "Running", n) for i, n in enumerate(self._web_nodes[:replicas])] + [
            pod("client", "Running", self._client_node)]

    def apply(self, manifest: dict[str, Any]) -> None:
        self.applied.append(manifest)

    def proxy_get(self, namespace: str, pod: str, port: int, path: str, query: list[tuple[str, str]]) -> str:
        assert (namespace, pod, port) == (verify.NAMESPACE, "client", 8080)
        if path == "shell":
            return json.dumps({"output": self._dns})
        assert path == "dial" and ("host", "web.provision-verify.svc.cluster.local") in query
        return json.dumps({"responses": self._answers, "errors": []})

    def namespace_exists(self, name: str) -> bool:
        return False

    def delete_namespace(self, name: str) -> None:
        self.deleted.append(name)


def healthy(**kw: Any) -> FakeApi:
    args: dict[str, Any] = {"nodes": {"cp1": True, "w1": True, "w2": True},
                            "system": {"coredns-1": "Running", "etcd-cp1": "Running", "job-x": "Succeeded"},
                            "web_nodes": ["w1", "w2"], "client_node": "w1"}
    args.update(kw)
    return FakeApi(**args)


def results(api: FakeApi, expected: list[str] | None = None, schedulable: int = 2) -> dict[str, verify.Check]:
    checks = verify.run(api, expected or ["cp1", "w1", "w2"], schedulable)
    return {c.name: c for c in checks}


def test_a_healthy_cluster_passes_and_cleans_up() -> None:
    api = healthy()
    r = results(api)
    assert all(c.ok for c in r.values()), r
    assert api.deleted == [verify.NAMESPACE]
    deployment = next(m for m in api.applied if m["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == "kubernetes.io/hostname"


def test_a_missing_or_unready_node_fails() -> None:
    r = results(healthy(nodes={"cp1": True, "w1": False}))
    assert not r["nodes Ready"].ok
    assert "missing: w2" in r["nodes Ready"].detail and "not Ready: w1" in r["nodes Ready"].detail


def test_a_crashing_system_pod_fails() -> None:
    r = results(healthy(system={"coredns-1": "Running", "kube-proxy-x": "Pending"}))
    assert not r["kube-system pods"].ok and "kube-proxy-x" in r["kube-system pods"].detail


def test_dns_failure_is_reported() -> None:
    r = results(healthy(dns="** server can't find kubernetes.default: NXDOMAIN"))
    assert not r["DNS"].ok and r["service traffic"].ok


def test_no_answer_through_the_service_fails() -> None:
    r = results(healthy(answers=[]))
    assert not r["service traffic"].ok


def test_replicas_on_one_node_fail_the_spread() -> None:
    r = results(healthy(web_nodes=["w1", "w1"]))
    assert not r["service traffic"].ok


def test_single_node_cluster_uses_one_replica() -> None:
    api = healthy(nodes={"cp1": True}, web_nodes=["cp1"], client_node="cp1")
    r = results(api, ["cp1"], schedulable=1)
    assert all(c.ok for c in r.values()), r
    assert next(m for m in api.applied if m["kind"] == "Deployment")["spec"]["replicas"] == 1


# --- verify's real client code (KubeApi, the kubernetes client) against an HTTP-level API server double ---------

def test_kube_api_runs_verify_twice_through_the_real_client(tmp_path: Path) -> None:
    """The pod proxy gets agnhost's query as a query (the generated proxy call percent-encodes '?' into the
    path, which agnhost answers from its '/' handler), and a second verify waits out the first one's namespace
    while it is Terminating (content created in it would get 403)."""
    cluster = http_apiserver.Cluster(["cp1", "w1", "w2"], web_nodes=["w1", "w2"], client_node="w1")
    server = http_apiserver.serve(cluster)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(http_apiserver.kubeconfig(server))
    try:
        for attempt in (1, 2):
            checks = {c.name: c for c in verify.run(verify.KubeApi(kubeconfig), ["cp1", "w1", "w2"], 2)}
            assert all(c.ok for c in checks.values()), (attempt, checks)
    finally:
        server.shutdown()
    assert ("/shell", "cmd=nslookup+kubernetes.default") in cluster.proxied or \
        ("/shell", "cmd=nslookup%20kubernetes.default") in cluster.proxied, cluster.proxied
    assert any(sub == "/dial" and "host=web.provision-verify.svc.cluster.local" in q for sub, q in cluster.proxied)


def test_the_double_refuses_a_query_written_into_the_path(tmp_path: Path) -> None:
    """What the old call did: the client encodes the path argument, the pod sees no /shell."""
    cluster = http_apiserver.Cluster(["cp1"], web_nodes=["cp1"], client_node="cp1")
    server = http_apiserver.serve(cluster)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(http_apiserver.kubeconfig(server))
    try:
        api = verify.KubeApi(kubeconfig)
        old = api._core.connect_get_namespaced_pod_proxy_with_path("client:8080", "ns", "shell?cmd=id")
    finally:
        server.shutdown()
    assert str(old).startswith("NOW:") and cluster.proxied == [("/shell?cmd=id", "")]
