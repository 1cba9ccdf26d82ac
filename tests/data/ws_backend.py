"""A WebSocket echo backend (the `websockets` package): echoes every message on any path and
answers plain HTTP requests 200, so the gateway's tests can tell a tunnel from a request.

Usage: ws_backend.py PORT
"""
import http
import sys

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve


def echo(ws):
    try:
        for message in ws:
            ws.send(message)
    except ConnectionClosed:
        pass  # a tunnel the gateway closed without a Close frame (idle timeout)


def plain_http(connection, request):
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return connection.respond(http.HTTPStatus.OK, "not a websocket\n")
    return None


with serve(echo, "127.0.0.1", int(sys.argv[1]), process_request=plain_http) as server:
    server.serve_forever()
