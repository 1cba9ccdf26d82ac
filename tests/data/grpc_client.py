"""A gRPC client (grpcio) for the gateway's tests, raw bytes so no generated code is needed.
Calls METHOD (`unary`: /echo.Echo/Unary with b"hello"; `chat`: /echo.Echo/Chat with N
messages; any path starting with `/`: a unary call of it) and prints one JSON line:
{"code": "OK", "replies": [...], "trailers": {...}} or {"code": NAME, "details": text}.

Usage: grpc_client.py TARGET METHOD N [--tls CA NAME] [--authority NAME] [KEY=VALUE ...]
(--tls: TLS trusting the CA file, NAME as SNI and verified name; --authority: the
`:authority` of the calls; KEY=VALUE: metadata)
"""
import json
import sys

import grpc

target, method, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
rest = sys.argv[4:]
options, tls = [], None
while rest[:1] in (["--tls"], ["--authority"]):
    if rest[0] == "--tls":
        tls, name, rest = rest[1], rest[2], rest[3:]
        options.append(("grpc.ssl_target_name_override", name))
    else:
        options.append(("grpc.default_authority", rest[1]))
        rest = rest[2:]
if tls:
    with open(tls, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    channel = grpc.secure_channel(target, credentials, options=options)
else:
    channel = grpc.insecure_channel(target, options=options)
metadata = [tuple(m.split("=", 1)) for m in rest]

try:
    if method == "chat":
        call = channel.stream_stream("/echo.Echo/Chat")
        sent = [f"message {i}".encode() for i in range(count)]
        replies = [r.decode() for r in call(iter(sent), metadata=metadata, timeout=10)]
        trailers = {}
    else:
        path = "/echo.Echo/Unary" if method == "unary" else method
        reply, info = channel.unary_unary(path).with_call(b"hello", metadata=metadata, timeout=10)
        replies = [reply.decode()]
        trailers = dict(info.trailing_metadata() or ())
    print(json.dumps({"code": "OK", "replies": replies, "trailers": trailers}))
except grpc.RpcError as e:
    print(json.dumps({"code": e.code().name, "details": e.details()}))
