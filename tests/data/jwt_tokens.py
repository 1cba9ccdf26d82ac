"""Signs the jwt tests' tokens with PyJWT and cryptography.

Usage: jwt_tokens.py <hs-secret> <now>. Prints one JSON line: the public keys (PEM) the
gateway's jwt secrets hold, and a token per case. Each algorithm's token names the secret
`key-<alg>` in `iss`; the refusal cases are named after what is wrong with them.
"""
import base64
import hashlib
import hmac
import json
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

secret, now = sys.argv[1], int(sys.argv[2])

rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
private = {
    "rsa": rsa_key,
    "ec256": ec.generate_private_key(ec.SECP256R1()),
    "ec384": ec.generate_private_key(ec.SECP384R1()),
    "ed": ed25519.Ed25519PrivateKey.generate(),
}


def public_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


family = {
    "RS256": "rsa", "RS384": "rsa", "RS512": "rsa",
    "PS256": "rsa", "PS384": "rsa", "PS512": "rsa",
    "ES256": "ec256", "ES384": "ec384", "EdDSA": "ed",
}


def sign(alg, claims, key=None):
    if key is None:
        key = secret if alg.startswith("HS") else private[family[alg]]
    return jwt.encode(claims, key, algorithm=alg)


def claims(alg, **extra):
    return {"iss": f"key-{alg}", "exp": now + 300, **extra}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with(key_bytes, payload):
    """An HS256 token made by hand: PyJWT refuses a PEM public key as an HMAC secret."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    mac = hmac.new(key_bytes, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(mac)}"


algorithms = ["HS256", "HS384", "HS512", *family]
tokens = {alg: sign(alg, claims(alg)) for alg in algorithms}
tokens["expired"] = sign("HS256", claims("HS256", exp=now - 10))
tokens["not_yet_valid"] = sign("HS256", claims("HS256", nbf=now + 600))
tokens["wrong_signature"] = sign("HS256", claims("HS256"), key="another secret")
tokens["alg_none"] = jwt.encode(claims("HS256"), None, algorithm="none")
# Algorithm confusion: HS256 with the RSA public key as the secret, naming the RS256 secret.
tokens["hs256_with_rsa_public_key"] = hs256_with(public_pem(rsa_key).encode(), claims("RS256"))
tokens["rs256_signed_by_another_key"] = sign(
    "RS256", claims("RS256"), key=rsa.generate_private_key(public_exponent=65537, key_size=2048)
)
tokens["no_iss"] = sign("HS256", {"exp": now + 300})
tokens["empty_iss"] = sign("HS256", {"iss": "", "exp": now + 300})
tokens["unknown_iss"] = sign("HS256", {"iss": "nobody", "exp": now + 300})
tokens["no_exp"] = sign("HS256", {"iss": "key-HS256"})
tokens["base64_secret"] = sign("HS256", {"iss": "key-HS256-b64", "exp": now + 300})
tokens["kid_header"] = jwt.encode({"exp": now + 300}, secret, algorithm="HS256",
                                  headers={"kid": "key-HS256"})
tokens["far_exp"] = sign("HS256", claims("HS256", exp=now + 3600))

print(json.dumps({
    "keys": {name: public_pem(key) for name, key in private.items()},
    "family": family,
    "tokens": tokens,
}))
