"""A gRPC backend (grpcio) with raw-bytes methods, so no generated code is needed:
/echo.Echo/Unary answers b"echo:" + the request with a trailer (`x-echo-trailer: kept`); /echo.Echo/Chat (bidirectional streaming) echoes each message as it comes.

Usage: grpc_backend.py PORT [CERT KEY]   (with CERT and KEY it serves TLS, else h2c)
"""
import sys
from concurrent import futures

import grpc


def unary(request, context):
    context.set_trailing_metadata((("x-echo-trailer", "kept"),))
    return b"echo:" + request


def chat(requests, context):
    for message in requests:
        yield message


handler = grpc.method_handlers_generic_handler(
    "echo.Echo",
    {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
    },
)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
server.add_generic_rpc_handlers((handler,))
address = f"127.0.0.1:{sys.argv[1]}"
if len(sys.argv) > 3:
    with open(sys.argv[2], "rb") as c, open(sys.argv[3], "rb") as k:
        server.add_secure_port(address, grpc.ssl_server_credentials([(k.read(), c.read())]))
else:
    server.add_insecure_port(address)
server.start()
server.wait_for_termination()
