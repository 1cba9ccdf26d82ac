"""A WebSocket client (the `websockets` package) for the gateway's tests: sends N numbered
messages without compression (so that the bytes on the wire are known), checks each echo
comes back in order, closes with code 1000, and prints one JSON
line: {"echoed": n, "in_order": bool} or {"status": HTTP status} when the handshake is refused.

Usage: ws_client.py URL N [HEADER=VALUE ...]
"""
import json
import sys

from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

url, count = sys.argv[1], int(sys.argv[2])
headers = dict(h.split("=", 1) for h in sys.argv[3:])
try:
    with connect(url, additional_headers=headers, open_timeout=10, compression=None) as ws:
        in_order = True
        for i in range(count):
            ws.send(f"message {i}")
            in_order &= ws.recv(timeout=10) == f"message {i}"
        ws.close(code=1000)
        print(json.dumps({"echoed": count, "in_order": in_order}))
except InvalidStatus as e:
    print(json.dumps({"status": e.response.status_code}))
