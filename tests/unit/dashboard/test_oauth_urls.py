"""Authorization URLs built through Authlib carry state, an S256 PKCE challenge and a nonce."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import time

import httpx

from api.dashboard.oauth import GitHubConfig, GitHubLogin, GoogleConfig, GoogleLogin

REDIRECT = "https://vp.example/login/google/callback"


def challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def test_google_url_has_state_pkce_nonce_and_exact_redirect() -> None:
    login = GoogleLogin(GoogleConfig("cid", "secret", "https://idp.example/.well-known"))
    login._metadata = {"authorization_endpoint": "https://idp.example/auth"}
    login._metadata_at = time.monotonic()
    url = httpx.URL(await login.authorization_url(REDIRECT, "st4te", "v" * 50, "n0nce"))
    q = url.params
    assert url.host == "idp.example" and url.path == "/auth"
    assert q["client_id"] == "cid" and q["redirect_uri"] == REDIRECT
    assert q["state"] == "st4te" and q["nonce"] == "n0nce" and q["response_type"] == "code"
    assert q["code_challenge_method"] == "S256" and q["code_challenge"] == challenge("v" * 50)
    assert "openid" in q["scope"].split() and "email" in q["scope"].split()
    assert "secret" not in str(url)


async def test_github_url_has_state_and_pkce() -> None:
    login = GitHubLogin(GitHubConfig("gh", "secret", authorize_url="https://gh.example/authorize"))
    url = httpx.URL(await login.authorization_url(REDIRECT, "s", "w" * 60, "unused"))
    assert url.params["code_challenge"] == challenge("w" * 60)
    assert url.params["state"] == "s" and url.params["scope"] == "user:email"
    assert "secret" not in str(url)


def test_the_coordinator_loads_authlib_only_for_a_login() -> None:
    # Authlib and joserfc are imported by the first sign-in, not by the coordinator.
    probe = (
        "import sys, vectorpanda.server.coordinator; "
        "print(','.join(m for m in ('authlib', 'joserfc') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
