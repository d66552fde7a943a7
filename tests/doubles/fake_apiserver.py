#!/usr/bin/python3
"""TEST DOUBLE of kube-apiserver (see tests/doubles/README.md), started by the kubeadm double's `init`, and on
each joining control plane as a replica that hands every request to the first one's (its state lives there, as a
real API server's lives in etcd).

Serves HTTPS on :6443 with a certificate from the cluster CA the kubeadm double made, and authenticates and
authorizes every request the way kube-apiserver with kubeadm's RBAC does:
  - a bearer token from a kubeconfig the kubeadm double wrote is that user (all allowed, as for the admin);
  - no credentials is `system:anonymous`: with `--anonymous-auth=false` every path answers 401 (the kubelet's
    probes, kubeadm's control-plane check and haproxy's health check included); otherwise anonymous may read only
    what `system:public-info-viewer` grants (/healthz, /livez, /readyz, /version) and the cluster-info ConfigMap
    join discovery reads (here: the join handshake), and gets 403 elsewhere.
  GET  /healthz /livez /readyz   "ok"
  POST /double/join      the join handshake: the bootstrap token must be one `kubeadm token create` made,
                         the CA hash must match the CA, a control plane must bring the uploaded certificate key
  GET  /api/v1/nodes     the nodes that joined, in the shape of a Kubernetes NodeList
  GET/DELETE /api/v1/nodes/NAME   one node (404 when it never joined or was deleted)
"""

import hashlib
import http.server
import json
import secrets
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

PKI = "/etc/kubernetes/pki"
STATE = "/var/lib/provision-doubles"
LOCK = threading.Lock()
PUBLIC_INFO = {"/healthz", "/livez", "/readyz", "/version", "/version/"}  # system:public-info-viewer
DISCOVERY = {"/double/join"}  # kubeadm's RBAC lets system:anonymous get kube-public/cluster-info


def ca_hash():
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", f"{PKI}/ca.crt"], capture_output=True,
                         check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True,
                         check=True).stdout
    return "sha256:" + hashlib.sha256(der).hexdigest()


def serving_cert():
    key, csr, crt = f"{STATE}/apiserver.key", f"{STATE}/apiserver.csr", f"{STATE}/apiserver.crt"
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/CN=kube-apiserver", "-keyout", key, "-out", csr], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", f"{PKI}/ca.crt", "-CAkey", f"{PKI}/ca.key",
                    "-CAcreateserial", "-days", "1", "-out", crt], check=True, capture_output=True)
    return crt, key


def shared_certs():
    """The CAs (and keys) every control plane shares, as kubeadm's upload-certs stores them in Secret kubeadm-certs:
    ca, front-proxy-ca, etcd/ca for stacked etcd (copycerts.go certsToTransfer, sa.* left out here)."""
    out = {}
    for rel in ("ca", "front-proxy-ca", "etcd/ca"):
        for suffix in ("crt", "key"):
            try:
                with open(f"{PKI}/{rel}.{suffix}") as f:
                    out[f"{rel}.{suffix}"] = f.read()
            except FileNotFoundError:
                pass
    return out


def etcd_members(nodes):
    """The control planes' stacked etcd members, as kubeadm finds them through the API (the etcd pods'
    advertise-client-urls annotation): name, client and peer URL per control plane node."""
    return [{"name": n["name"], "clientURL": f"https://{n['address']}:2379", "peerURL": f"https://{n['address']}:2380"}
            for n in nodes if n["controlPlane"] and n.get("address")]


def read_lines(name):
    try:
        with open(f"{STATE}/{name}") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def tokens():
    return {entry["token"] for entry in read_lines("tokens")}


def register_user(user):
    token = "double-" + secrets.token_hex(8)
    with open(f"{STATE}/user-tokens", "a") as f:
        f.write(json.dumps({"token": token, "user": user}) + "\n")
    return token


def anonymous_enabled():
    with open(f"{STATE}/apiserver-args.json") as f:
        return json.load(f).get("anonymous-auth", "true") != "false"


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def kubelet_config():
    """The kubelet-config ConfigMap kubeadm init uploaded: what a joining node's kubelet-start writes."""
    try:
        with open(f"{STATE}/kubelet-config.json") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def load_nodes():
    with open(f"{STATE}/nodes.json") as f:
        return json.load(f)


def primary():
    """The first control plane's API server (host:port) on a replica, else None."""
    try:
        with open(f"{STATE}/primary") as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


class Handler(http.server.BaseHTTPRequestHandler):
    def forward(self):
        """A replica: the same request to the first control plane's API server, its answer back unchanged."""
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))) if self.command == "POST" else None
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type", "host")}
        ctx = ssl.create_default_context(cafile=f"{PKI}/ca.crt")
        ctx.check_hostname = False
        req = urllib.request.Request(f"https://{PRIMARY}{self.path}", data=body, headers=headers, method=self.command)
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
                return self.reply(resp.status, resp.read())
        except urllib.error.HTTPError as exc:
            return self.reply(exc.code, exc.read())
        except OSError as exc:
            return self.reply(503, status(503, "ServiceUnavailable", f"storage unavailable: {exc}"))

    def reply(self, code, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def user(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            found = [e["user"] for e in read_lines("user-tokens") if e["token"] == auth[7:]]
            return found[0] if found else None
        return "system:anonymous"

    def authorized(self):
        """Authentication, then authorization, as kube-apiserver does them; answers the refusal itself."""
        path = self.path.split("?", 1)[0]
        user = self.user()
        if user is None or (user == "system:anonymous" and not anonymous_enabled()):
            self.reply(401, status(401, "Unauthorized", "Unauthorized"))
            return False
        if user == "system:anonymous" and path not in PUBLIC_INFO | DISCOVERY:
            self.reply(403, status(403, "Forbidden", f'forbidden: User "system:anonymous" cannot '
                                                     f'{self.command.lower()} path "{path}"'))
            return False
        return True

    def do_GET(self):
        if PRIMARY:
            return self.forward()
        if not self.authorized():
            return None
        if self.path in ("/healthz", "/livez", "/readyz"):
            return self.reply(200, b"ok")
        if self.path.startswith("/api/v1/nodes/"):
            name = self.path.rsplit("/", 1)[1]
            found = [n for n in load_nodes() if n["name"] == name]
            return self.reply(200, {"kind": "Node", "metadata": {"name": name}}) if found else \
                self.reply(404, status(404, "NotFound", f'nodes "{name}" not found'))
        if self.path.startswith("/api/v1/nodes"):
            items = [{"metadata": {"name": n["name"], "labels": (
                {"node-role.kubernetes.io/control-plane": ""} if n["controlPlane"] else {})},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}} for n in load_nodes()]
            return self.reply(200, {"kind": "NodeList", "apiVersion": "v1", "items": items})
        return self.reply(404, status(404, "NotFound", "the server could not find the requested resource"))

    def do_DELETE(self):
        if PRIMARY:
            return self.forward()
        if not self.authorized():
            return None
        if not self.path.startswith("/api/v1/nodes/"):
            return self.reply(404, status(404, "NotFound", "the server could not find the requested resource"))
        name = self.path.rsplit("/", 1)[1]
        with LOCK:
            nodes = load_nodes()
            if not any(n["name"] == name for n in nodes):
                return self.reply(404, status(404, "NotFound", f'nodes "{name}" not found'))
            with open(f"{STATE}/nodes.json", "w") as f:
                json.dump([n for n in nodes if n["name"] != name], f)
        return self.reply(200, {"kind": "Status", "status": "Success"})

    def do_POST(self):
        if PRIMARY:
            return self.forward()
        if not self.authorized():
            return None
        if self.path != "/double/join":
            return self.reply(404, status(404, "NotFound", "the server could not find the requested resource"))
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        with LOCK:
            if req["token"] not in tokens():
                return self.reply(403, b"unknown bootstrap token")
            if req["caCertHash"] != CA_HASH:
                return self.reply(403, b"CA certificate hash does not match")
            if req["controlPlane"]:
                with open(f"{STATE}/certificate-key") as f:
                    if req["certificateKey"] != f.read().strip():
                        return self.reply(403, b"certificate key does not match the uploaded certificates")
            nodes = load_nodes()
            if any(n["name"] == req["name"] for n in nodes):
                return self.reply(409, b"a node with this name has joined already")
            members = etcd_members(nodes)
            nodes.append({"name": req["name"], "controlPlane": req["controlPlane"], "time": time.time(),
                          "address": req.get("address")})
            with open(f"{STATE}/nodes.json", "w") as f:
                json.dump(nodes, f)
            answer = {"server": f"https://{self.headers['Host']}", "nodeToken": register_user("system:node"),
                      "kubeletConfig": kubelet_config(),
                      "primary": f"{nodes[0]['address']}:6443" if nodes[0].get("address") else None}
            if req["controlPlane"]:
                answer["adminToken"] = register_user("kubernetes-admin")
                answer["certs"] = shared_certs()  # kubeadm-certs: decrypted with the certificate key checked above
                if "etcd/ca.key" in answer["certs"]:
                    answer["etcdMembers"] = members
        return self.reply(200, answer)

    def log_message(self, *args):
        pass


PRIMARY = primary()
CA_HASH = ca_hash()
cert, key = serving_cert()
server = http.server.ThreadingHTTPServer(("0.0.0.0", 6443), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
