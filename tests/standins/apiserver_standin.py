"""STAND-IN for kube-apiserver, used only by the endpoint tests: no API server binary can be had here.

A TLS server on :6443 that answers GET /healthz with 200 "ok" and any other path with the node's name, so a
test can see which backend haproxy picked. Run on a control-plane node: python3 apiserver_standin.py CERT KEY
"""

import http.server
import socket
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok" if self.path == "/healthz" else socket.gethostname().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


server = http.server.ThreadingHTTPServer(("0.0.0.0", 6443), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
