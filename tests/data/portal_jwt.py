"""A developer's JWT key pair for the portal tests, with PyJWT and cryptography.

Usage: portal_jwt.py keygen <key-file>  -> {"public": PEM}, the private key written to the file
       portal_jwt.py sign <key-file> <iss> <now> -> {"token": RS256 JWT with iss and exp}
"""
import json
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

mode, path = sys.argv[1], sys.argv[2]
if mode == "keygen":
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(path, "wb") as f:
        f.write(key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    print(json.dumps({"public": public}))
else:
    iss, now = sys.argv[3], int(sys.argv[4])
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    token = jwt.encode({"iss": iss, "exp": now + 300}, key, algorithm="RS256")
    print(json.dumps({"token": token}))
