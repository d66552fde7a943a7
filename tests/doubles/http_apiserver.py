"""TEST DOUBLE of kube-apiserver at the HTTP level, for `provision verify`'s real client code (verify.KubeApi).

It answers the requests the kubernetes Python client sends, on 127.0.0.1 over plain HTTP with a bearer token,
and behaves as kube-apiserver does where verify depends on it (tests/doubles/README.md names the sources):
- the pod proxy (`/api/v1/namespaces/NS/pods/NAME:PORT/proxy/SUBPATH`) decodes the path before it forwards it
  (a percent-encoded `?` stays part of the path) and forwards the raw query string; the pod is agnhost netexec,
  which routes exact paths (`/shell` reads `cmd`, `/dial` reads request/protocol/host/port/tries) and answers
  anything else from its `/` handler ("NOW: <time>");
- a deleted namespace stays Terminating for a while: creating content in it is 403 Forbidden ("unable to create
  new content in namespace X because it is being terminated"), creating the namespace again is 409
  AlreadyExists ("object is being deleted"); GET answers it with phase Terminating, then 404;
- no or a wrong bearer token is 401.
A scripted scheduler and kubelet run the pods verify creates at once on the nodes given, all Ready.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "verify-double-token"
TERMINATING_SECONDS = 1.5


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


class Cluster:
    """What the double's API server stores."""

    def __init__(self, nodes: list[str], web_nodes: list[str], client_node: str) -> None:
        self.nodes, self.web_nodes, self.client_node = nodes, web_nodes, client_node
        self.namespaces: dict[str, float | None] = {"kube-system": None}  # name -> deletion time
        self.objects: dict[str, list[dict[str, Any]]] = {}
        self.proxied: list[tuple[str, str]] = []  # (path the pod saw, raw query)
        self.lock = threading.Lock()

    def phase(self, ns: str) -> str | None:
        if ns not in self.namespaces:
            return None
        deleted = self.namespaces[ns]
        if deleted is None:
            return "Active"
        if time.monotonic() - deleted > TERMINATING_SECONDS:
            del self.namespaces[ns]
            self.objects.pop(ns, None)
            return None
        return "Terminating"

    def pods(self, ns: str) -> list[dict[str, Any]]:
        def pod(name: str, node: str) -> dict[str, Any]:
            return {"metadata": {"name": name, "namespace": ns}, "spec": {"nodeName": node, "containers": []},
                    "status": {"phase": "Running", "containerStatuses": [
                        {"name": "c", "ready": True, "restartCount": 0, "image": "x", "imageID": "x"}]}}
        if ns == "kube-system":
            return [pod("coredns-1", self.nodes[0]), pod("kube-proxy-1", self.nodes[0])]
        out = []
        for obj in self.objects.get(ns, []):
            if obj["kind"] == "Deployment":
                out += [pod(f"web-{i}", n) for i, n in enumerate(self.web_nodes[:obj["spec"]["replicas"]])]
            elif obj["kind"] == "Pod":
                out.append(pod(obj["metadata"]["name"], self.client_node))
        return out


def agnhost(path: str, query: str) -> tuple[int, bytes]:
    """agnhost netexec's handlers, matched on the exact decoded path as Go's ServeMux does."""
    args = urllib.parse.parse_qs(query)
    if path == "/shell":
        cmd = args.get("cmd", [""])[0]
        out = "Server: 10.96.0.10\nName: kubernetes.default.svc.cluster.local\nAddress: 10.96.0.1\n" \
            if cmd == "nslookup kubernetes.default" else ""
        return 200, json.dumps({"output": out} if out else {"error": f"unknown command {cmd!r}"}).encode()
    if path == "/dial":
        if not args.get("request"):
            return 400, b"request parameter required"
        return 200, json.dumps({"responses": ["web-0", "web-1"], "errors": []}).encode()
    return 200, f"NOW: {time.time()}".encode()


PROXY = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/:]+):(\d+)/proxy(/.*)?$")
COLLECTION = re.compile(r"^/(?:api/v1|apis/apps/v1)/namespaces/([^/]+)/(pods|services|deployments)$")


class Handler(BaseHTTPRequestHandler):
    cluster: Cluster

    def reply(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self) -> tuple[str, str] | None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.reply(401, status(401, "Unauthorized", "Unauthorized"))
            return None
        raw_path, _, query = self.path.partition("?")
        return urllib.parse.unquote(raw_path), query  # the API server routes on the decoded path

    def do_GET(self) -> None:
        routed = self.route()
        if routed is None:
            return
        path, query = routed
        c = self.cluster
        with c.lock:
            if m := PROXY.match(path):
                sub = m.group(4) or "/"
                c.proxied.append((sub, query))
                code, body = agnhost(sub, query)
                return self.reply(code, body, "text/plain")
            if path == "/api/v1/nodes":
                items = [{"metadata": {"name": n}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
                         for n in c.nodes]
                return self.reply(200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": items})
            if m := re.match(r"^/api/v1/namespaces/([^/]+)$", path):
                phase = c.phase(m.group(1))
                if phase is None:
                    return self.reply(404, status(404, "NotFound", f'namespaces "{m.group(1)}" not found'))
                return self.reply(200, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": m.group(1)},
                                        "status": {"phase": phase}})
            if m := re.match(r"^/api/v1/namespaces/([^/]+)/pods$", path):
                return self.reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {},
                                        "items": c.pods(m.group(1))})
        self.reply(404, status(404, "NotFound", "the server could not find the requested resource"))

    def do_POST(self) -> None:
        routed = self.route()
        if routed is None:
            return
        path, _ = routed
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        c = self.cluster
        with c.lock:
            if path == "/api/v1/namespaces":
                name = body["metadata"]["name"]
                phase = c.phase(name)
                if phase == "Terminating":
                    return self.reply(409, status(409, "AlreadyExists",
                                                  f'object is being deleted: namespaces "{name}" already exists'))
                if phase is not None:
                    return self.reply(409, status(409, "AlreadyExists", f'namespaces "{name}" already exists'))
                c.namespaces[name] = None
                return self.reply(201, body)
            if m := COLLECTION.match(path):
                ns, name = m.group(1), body["metadata"]["name"]
                phase = c.phase(ns)
                if phase is None:
                    return self.reply(404, status(404, "NotFound", f'namespaces "{ns}" not found'))
                if phase == "Terminating":
                    return self.reply(403, status(403, "Forbidden", f'{m.group(2)} "{name}" is forbidden: unable to '
                                                  f"create new content in namespace {ns} because it is being "
                                                  "terminated"))
                c.objects.setdefault(ns, []).append(body)
                return self.reply(201, body)
        self.reply(404, status(404, "NotFound", "the server could not find the requested resource"))

    def do_DELETE(self) -> None:
        routed = self.route()
        if routed is None:
            return
        path, _ = routed
        c = self.cluster
        with c.lock:
            if (m := re.match(r"^/api/v1/namespaces/([^/]+)$", path)) and c.phase(m.group(1)) is not None:
                if c.namespaces[m.group(1)] is None:
                    c.namespaces[m.group(1)] = time.monotonic()
                return self.reply(200, {"kind": "Namespace", "apiVersion": "v1",
                                        "metadata": {"name": m.group(1)}, "status": {"phase": "Terminating"}})
        self.reply(404, status(404, "NotFound", "the server could not find the requested resource"))

    def log_message(self, *args: Any) -> None:
        pass


def serve(cluster: Cluster) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"cluster": cluster})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def kubeconfig(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "double",
        "clusters": [{"name": "double", "cluster": {"server": f"http://{host}:{port}"}}],
        "users": [{"name": "admin", "user": {"token": TOKEN}}],
        "contexts": [{"name": "double", "context": {"cluster": "double", "user": "admin"}}],
    })
