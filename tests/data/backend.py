"""A backend process the upstream tests can kill: answers every request on 127.0.0.1:PORT.

usage: backend.py PORT [ok|500|slow=MS]

`ok` answers 200 with {"port": PORT, "path": ...}; `500` answers 500 to everything; `slow=MS`
answers 200 after MS milliseconds. Each response is written in one write, so a kill leaves
either a whole response or none. HTTP/1.1 with keep-alive, one thread per connection.
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
MODE = sys.argv[2] if len(sys.argv) > 2 else "ok"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status = 500 if MODE == "500" else 200
        if MODE.startswith("slow="):
            time.sleep(int(MODE[5:]) / 1000)
        body = json.dumps({"port": PORT, "path": self.path}).encode()
        head = (
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.wfile.write(head + body)

    do_GET = do_POST = answer

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 256


Server(("127.0.0.1", PORT), Handler).serve_forever()
