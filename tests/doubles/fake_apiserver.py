#!/usr/bin/python3
"""TEST DOUBLE of kube-apiserver (see tests/doubles/README.md), started by the kubeadm double's `init`.

Serves HTTPS on :6443 with a certificate from the cluster CA the kubeadm double made:
  GET  /healthz          "ok" (what haproxy's health check asks)
  POST /double/join      the join handshake: the bootstrap token must be one `kubeadm token create` made,
                         the CA hash must match the CA, a control plane must bring the uploaded certificate key
  GET  /api/v1/nodes     the nodes that joined, in the shape of a Kubernetes NodeList
  GET/DELETE /api/v1/nodes/NAME   one node (404 when it never joined or was deleted)
"""

import hashlib
import http.server
import json
import ssl
import subprocess
import threading
import time

PKI = "/etc/kubernetes/pki"
STATE = "/var/lib/provision-doubles"
LOCK = threading.Lock()


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


def tokens():
    with open(f"{STATE}/tokens") as f:
        return {json.loads(line)["token"] for line in f if line.strip()}


def load_nodes():
    with open(f"{STATE}/nodes.json") as f:
        return json.load(f)


class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            return self.reply(200, b"ok")
        if self.path.startswith("/api/v1/nodes/"):
            name = self.path.rsplit("/", 1)[1]
            found = [n for n in load_nodes() if n["name"] == name]
            return self.reply(200, {"kind": "Node", "metadata": {"name": name}}) if found else \
                self.reply(404, b"not found")
        if self.path.startswith("/api/v1/nodes"):
            items = [{"metadata": {"name": n["name"], "labels": (
                {"node-role.kubernetes.io/control-plane": ""} if n["controlPlane"] else {})},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}} for n in load_nodes()]
            return self.reply(200, {"kind": "NodeList", "apiVersion": "v1", "items": items})
        return self.reply(404, b"not found")

    def do_DELETE(self):
        if not self.path.startswith("/api/v1/nodes/"):
            return self.reply(404, b"not found")
        name = self.path.rsplit("/", 1)[1]
        with LOCK:
            nodes = load_nodes()
            if not any(n["name"] == name for n in nodes):
                return self.reply(404, b"not found")
            with open(f"{STATE}/nodes.json", "w") as f:
                json.dump([n for n in nodes if n["name"] != name], f)
        return self.reply(200, {"kind": "Status", "status": "Success"})

    def do_POST(self):
        if self.path != "/double/join":
            return self.reply(404, b"not found")
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
            nodes.append({"name": req["name"], "controlPlane": req["controlPlane"], "time": time.time()})
            with open(f"{STATE}/nodes.json", "w") as f:
                json.dump(nodes, f)
        return self.reply(200, {"server": f"https://{self.headers['Host']}"})

    def log_message(self, *args):
        pass


CA_HASH = ca_hash()
cert, key = serving_cert()
server = http.server.ThreadingHTTPServer(("0.0.0.0", 6443), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
