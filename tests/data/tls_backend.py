"""An HTTPS backend for the upstream TLS tests: answers every request on 127.0.0.1:PORT with
{"sni": the name the client asked for, "client": the client certificate's CN or null}.

usage: tls_backend.py PORT CERT KEY [CLIENT_CA]

With CLIENT_CA, a client certificate signed by it is required (mTLS): a handshake without one
fails. HTTP/1.1 with keep-alive, one thread per connection.
"""
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, CERT, KEY = int(sys.argv[1]), sys.argv[2], sys.argv[3]
CLIENT_CA = sys.argv[4] if len(sys.argv) > 4 else None
SNI = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        peer = self.connection.getpeercert() or {}
        cn = next((v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"), None)
        body = json.dumps({"sni": SNI.get(id(self.connection)), "client": cn}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
if CLIENT_CA:
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(CLIENT_CA)


def remember_sni(sock, name, _context):
    SNI[id(sock)] = name


context.sni_callback = remember_sni
server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
