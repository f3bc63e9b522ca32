#!/usr/bin/env python3
"""Drive a running rotor with stock, unmodified client libraries.

    python3 tests/clients/oauth_client.py http://127.0.0.1:8000

- authlib's OAuth2Session (requests integration): discovers the endpoints from the
  RFC 8414 metadata, fetches a token with the password grant, calls a protected route,
  refreshes (RFC 6749 §6), introspects (RFC 7662, when ROTOR_INTROSPECTION_SECRET is
  set) and revokes (RFC 7009); a second client authenticates with HTTP Basic and an
  empty secret.
- PyJWT: verifies an access token with nothing but the JWKS document (rotor must run
  with JWT_ALGORITHM=EdDSA or ES256).

Exits 0 and prints "ALL OK" when every check passes; any failure raises (exit 1).
Run by tests/it/oauth.rs (`cargo test --test it oauth::stock_python_client`); needs
`pip install -r tests/clients/requirements.txt`.
"""

import os
import sys
import time
import uuid

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

TIMEOUT = 10
PASSWORD = "TestPass123"


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def step(message):
    print(f"ok: {message}", flush=True)


def discover(base):
    r = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=TIMEOUT)
    check(r.status_code == 200, f"metadata: {r.status_code} {r.text}")
    metadata = AuthorizationServerMetadata(r.json())
    # authlib's RFC 8414 validators, for every field rotor's flows rely on. (There is no
    # authorization endpoint, so `response_types_supported` has nothing to list.)
    for field in (
        "issuer",
        "token_endpoint",
        "jwks_uri",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint",
        "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint",
        "introspection_endpoint_auth_methods_supported",
    ):
        getattr(metadata, f"validate_{field}")()
    for grant in ("password", "refresh_token"):
        check(grant in metadata["grant_types_supported"], f"grant {grant} advertised")
    step(f"RFC 8414 metadata validated by authlib (issuer {metadata['issuer']})")
    return metadata


def register(base):
    email = f"authlib-{uuid.uuid4().hex[:12]}@test.com"
    r = requests.post(
        f"{base}/v1/users",
        json={"email": email, "password": PASSWORD, "full_name": "Stock Client"},
        timeout=TIMEOUT,
    )
    check(r.status_code == 201, f"register: {r.status_code} {r.text}")
    return email, r.json()["id"]


def verify_with_jwks(metadata, access_token, user_id):
    """PyJWT, given only the JWKS URL: finds the key by `kid` and verifies."""
    header = jwt.get_unverified_header(access_token)
    check(header["alg"] in ("EdDSA", "ES256"), f"asymmetric token expected, got {header}")
    check("kid" in header, f"kid in header: {header}")
    jwks_client = jwt.PyJWKClient(metadata["jwks_uri"], cache_keys=False, timeout=TIMEOUT)
    signing_key = jwks_client.get_signing_key_from_jwt(access_token)
    claims = jwt.decode(access_token, signing_key.key, algorithms=[header["alg"]])
    check(claims["sub"] == user_id, f"sub {claims['sub']} != {user_id}")
    check(claims["type"] == "access", f"type {claims}")
    check(claims["exp"] > time.time(), "not expired")

    # The same with a PyJWKSet built from the document itself.
    document = requests.get(metadata["jwks_uri"], timeout=TIMEOUT).json()
    jwk_set = jwt.PyJWKSet.from_dict(document)
    key = next(k for k in jwk_set.keys if k.key_id == header["kid"])
    jwt.decode(access_token, key.key, algorithms=[header["alg"]])

    # A tampered payload does not verify.
    head, payload, sig = access_token.split(".")
    forged = ".".join([head, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"), sig])
    try:
        jwt.decode(forged, signing_key.key, algorithms=[header["alg"]])
    except jwt.InvalidTokenError:
        pass
    else:
        raise AssertionError("a tampered token verified")
    step(f"PyJWT verified the {header['alg']} access token with only the JWKS (kid {header['kid']})")


def introspect(session, metadata, token, secret):
    r = session.introspect_token(
        metadata["introspection_endpoint"],
        token=token,
        auth=("resource-server", secret),
        timeout=TIMEOUT,
    )
    check(r.status_code == 200, f"introspect: {r.status_code} {r.text}")
    return r.json()


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    base = sys.argv[1].rstrip("/")
    secret = os.environ.get("ROTOR_INTROSPECTION_SECRET")

    metadata = discover(base)
    email, user_id = register(base)

    # A public client with no secret: authlib sends client_id in the form ("none").
    client = OAuth2Session(
        client_id="python-authlib",
        token_endpoint=metadata["token_endpoint"],
        scope=None,
    )
    token = client.fetch_token(
        metadata["token_endpoint"], username=email, password=PASSWORD, timeout=TIMEOUT
    )
    check(token["token_type"].lower() == "bearer", f"token_type {token}")
    check(token.get("refresh_token"), "refresh_token issued")
    check(isinstance(token.get("expires_in"), int) and token["expires_in"] > 0, f"expires_in {token}")
    check(token.get("expires_at"), "authlib computed expires_at")
    step(f"password grant: token_type={token['token_type']} expires_in={token['expires_in']}")

    me = client.get(f"{base}/v1/auth/me", timeout=TIMEOUT)
    check(me.status_code == 200, f"/v1/auth/me with authlib's bearer: {me.status_code} {me.text}")
    check(me.json()["email"] == email, "me is the logged-in user")
    step("authlib's session calls a protected route with the bearer token")

    verify_with_jwks(metadata, token["access_token"], user_id)

    if secret:
        info = introspect(client, metadata, token["access_token"], secret)
        check(info.get("active") is True and info["sub"] == user_id, f"introspection: {info}")
        check(info.get("client_id") == "python-authlib", f"client id recorded: {info}")
        step(f"introspection: active {info['token_type']} for {info['username']}")

    first_refresh = token["refresh_token"]
    refreshed = client.refresh_token(metadata["token_endpoint"], timeout=TIMEOUT)
    check(refreshed["refresh_token"] != first_refresh, "refresh token rotated")
    check(refreshed["access_token"] != token["access_token"], "new access token")
    check(client.token["refresh_token"] == refreshed["refresh_token"], "authlib keeps the rotated token")
    me = client.get(f"{base}/v1/auth/me", timeout=TIMEOUT)
    check(me.status_code == 200, f"new access token works: {me.status_code}")
    step("refresh_token grant rotated the refresh token; authlib stored the successor")
    verify_with_jwks(metadata, refreshed["access_token"], user_id)

    # A second client authenticating with HTTP Basic and an empty secret.
    basic = OAuth2Session(
        client_id="python-basic",
        client_secret="",
        token_endpoint_auth_method="client_secret_basic",
        revocation_endpoint_auth_method="client_secret_basic",
    )
    basic.fetch_token(metadata["token_endpoint"], username=email, password=PASSWORD, timeout=TIMEOUT)
    basic.refresh_token(metadata["token_endpoint"], timeout=TIMEOUT)
    step("client_secret_basic with an empty secret: token and refresh accepted")

    # Revocation (RFC 7009) of the refresh token ends the session.
    live_refresh = client.token["refresh_token"]
    r = client.revoke_token(
        metadata["revocation_endpoint"],
        token=live_refresh,
        token_type_hint="refresh_token",
        timeout=TIMEOUT,
    )
    check(r.status_code == 200, f"revoke: {r.status_code} {r.text}")
    try:
        client.refresh_token(metadata["token_endpoint"], refresh_token=live_refresh, timeout=TIMEOUT)
    except OAuthError as e:
        check(e.error == "invalid_grant", f"refresh after revoke: {e.error}")
    else:
        raise AssertionError("a revoked refresh token was refreshed")
    me = client.get(f"{base}/v1/auth/me", timeout=TIMEOUT)
    check(me.status_code == 401, f"the revoked session's access token: {me.status_code}")
    step("revoke_token ended the session: refresh -> invalid_grant, access token -> 401")

    # RFC 7009 §2.2: unknown tokens are answered 200 too.
    r = client.revoke_token(metadata["revocation_endpoint"], token="never-issued", timeout=TIMEOUT)
    check(r.status_code == 200, f"revoke unknown: {r.status_code}")
    if secret:
        info = introspect(client, metadata, live_refresh, secret)
        check(info == {"active": False}, f"revoked token introspects inactive: {info}")
        step("introspection: the revoked token is inactive")

    # The Basic client's session is its own and still alive; revoke it with Basic auth.
    r = basic.revoke_token(
        metadata["revocation_endpoint"], token=basic.token["access_token"], timeout=TIMEOUT
    )
    check(r.status_code == 200, f"revoke via Basic: {r.status_code}")
    step("revocation with client_secret_basic")

    print("ALL OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
