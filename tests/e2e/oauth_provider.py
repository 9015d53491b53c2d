"""A local OAuth 2.0 / OpenID Connect provider on loopback, for the dashboard tests.

Google-style OIDC under ``/google`` (discovery, authorize, token, userinfo,
JWKS; RS256 ID tokens carrying the nonce) and GitHub-style OAuth under
``/github`` (authorize, access_token, ``/api/user/emails``).
Like real providers it requires exact registered redirect URIs, PKCE (S256)
and single-use codes. The authorize page is a form where the tester types the
email to sign in as; ``approve()`` does the same without a browser.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.stack import Stack, free_port

GOOGLE_ID, GOOGLE_SECRET = "vp-test-google", "google-secret-" + "x" * 16
GITHUB_ID, GITHUB_SECRET = "vp-test-github", "github-secret-" + "y" * 16


@dataclass
class Grant:
    provider: str
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    email: str
    used: bool = False


@dataclass
class Account:
    email: str
    verified: bool = True


@dataclass
class OAuthProvider:
    """The provider's state; ``url`` is set once it serves."""

    redirect_uris: dict[str, set[str]] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> email
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    url: str = ""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": "k1"}))

    def add_account(self, email: str, verified: bool = True) -> None:
        self.accounts[email] = Account(email, verified)

    @property
    def google_metadata_url(self) -> str:
        return f"{self.url}/google/.well-known/openid-configuration"

    def env(self, public_url: str) -> dict[str, str]:
        """The dashboard settings that point a stack at this provider."""
        for name in ("google", "github"):
            self.redirect_uris.setdefault(name, set()).add(f"{public_url}/login/{name}/callback")
        return {
            "VP_PUBLIC_URL": public_url,
            "VP_GOOGLE_CLIENT_ID": GOOGLE_ID,
            "VP_GOOGLE_CLIENT_SECRET": GOOGLE_SECRET,
            "VP_GOOGLE_METADATA_URL": self.google_metadata_url,
            "VP_GITHUB_CLIENT_ID": GITHUB_ID,
            "VP_GITHUB_CLIENT_SECRET": GITHUB_SECRET,
            "VP_GITHUB_AUTHORIZE_URL": f"{self.url}/github/login/oauth/authorize",
            "VP_GITHUB_TOKEN_URL": f"{self.url}/github/login/oauth/access_token",
            "VP_GITHUB_API_URL": f"{self.url}/github/api",
        }

    def approve(self, authorize_url: str, email: str) -> str:
        """What the form does: sign ``email`` in; returns the redirect back to the app."""
        r = httpx.get(authorize_url)
        assert r.status_code == 200, r.text
        params = dict(httpx.URL(authorize_url).params)
        r = httpx.post(
            f"{httpx.URL(authorize_url).copy_with(query=None)}", data={**params, "email": email}
        )
        assert r.status_code == 302, r.text
        return r.headers["location"]


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _client_auth(request: Request, form: dict[str, str]) -> tuple[str, str]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        raw = base64.b64decode(header[6:]).decode()
        cid, _, secret = raw.partition(":")
        return cid, secret
    return form.get("client_id", ""), form.get("client_secret", "")


def build_app(p: OAuthProvider) -> FastAPI:
    app = FastAPI()
    registered = {"google": (GOOGLE_ID, GOOGLE_SECRET), "github": (GITHUB_ID, GITHUB_SECRET)}

    def check_authorize(provider: str, q: dict[str, str]) -> str | None:
        cid, _ = registered[provider]
        if q.get("client_id") != cid:
            return "unknown client_id"
        if q.get("redirect_uri") not in p.redirect_uris.get(provider, set()):
            return "redirect_uri is not registered for this client"
        if q.get("response_type") != "code":
            return "response_type must be code"
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return "PKCE (S256) is required"
        if not q.get("state"):
            return "state is required"
        if provider == "google" and not q.get("nonce"):
            return "nonce is required"
        return None

    async def authorize_page(provider: str, request: Request) -> Response:
        q = dict(request.query_params)
        p.authorize_requests.append({"provider": provider, **q})
        problem = check_authorize(provider, q)
        if problem:
            return HTMLResponse(f"<h1>Error</h1><p id='error'>{problem}</p>", status_code=400)
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{v}">'
            for k, v in q.items()
            if k.isidentifier()
        )
        return HTMLResponse(
            f"<!doctype html><meta name=viewport content='width=device-width'>"
            f"<h1>Test {provider} sign-in</h1><form method=post>{hidden}"
            f"<label>Email <input id=email name=email type=email></label>"
            f"<button id=approve type=submit>Sign in</button></form>"
        )

    async def approve(provider: str, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        problem = check_authorize(provider, form)
        if problem:
            return HTMLResponse(problem, status_code=400)
        email = form.get("email", "")
        if email not in p.accounts:
            return HTMLResponse("no such test account", status_code=400)
        code = secrets.token_urlsafe(16)
        p.grants[code] = Grant(
            provider,
            form["client_id"],
            form["redirect_uri"],
            form["code_challenge"],
            form.get("nonce"),
            email,
        )
        query = urlencode({"code": code, "state": form["state"]})
        return RedirectResponse(f"{form['redirect_uri']}?{query}", status_code=302)

    async def token(provider: str, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        p.token_requests.append({"provider": provider, **form})
        cid, secret = _client_auth(request, form)
        if (cid, secret) != registered[provider]:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = p.grants.get(form.get("code", ""))
        if grant is None or grant.used or grant.provider != provider or grant.client_id != cid:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        grant.used = True
        if form.get("redirect_uri") != grant.redirect_uri:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "redirect_uri"}, 400
            )
        if _challenge(form.get("code_verifier", "")) != grant.challenge:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, 400)
        access = secrets.token_urlsafe(24)
        p.tokens[access] = grant.email
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer"}
        if provider == "google":
            now = int(time.time())
            claims = {
                "iss": f"{p.url}/google",
                "aud": cid,
                "sub": hashlib.sha256(grant.email.encode()).hexdigest()[:20],
                "email": grant.email,
                "email_verified": p.accounts[grant.email].verified,
                "nonce": grant.nonce,
                "iat": now,
                "exp": now + 300,
            }
            body["id_token"] = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, p.key)
            body["expires_in"] = 300
        return JSONResponse(body)

    def bearer_email(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        return p.tokens.get(header[7:]) if header.lower().startswith("bearer ") else None

    @app.get("/google/.well-known/openid-configuration")
    async def discovery() -> dict[str, Any]:
        base = f"{p.url}/google"
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/jwks",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    @app.get("/google/jwks")
    async def jwks() -> dict[str, Any]:
        return KeySet([p.key]).as_dict(private=False)

    @app.get("/google/userinfo")
    async def userinfo(request: Request) -> Response:
        email = bearer_email(request)
        if email is None:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse({"email": email, "email_verified": p.accounts[email].verified})

    @app.get("/github/api/user/emails")
    async def gh_emails(request: Request) -> Response:
        email = bearer_email(request)
        if email is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        verified = p.accounts[email].verified
        return JSONResponse([{"email": email, "primary": True, "verified": verified}])

    def bound(handler: Any, provider: str) -> Any:
        async def endpoint(request: Request) -> Response:
            response: Response = await handler(provider, request)
            return response

        return endpoint

    for name, path in (
        ("google", "/google/authorize"),
        ("github", "/github/login/oauth/authorize"),
    ):
        app.add_api_route(path, bound(authorize_page, name), methods=["GET"])
        app.add_api_route(path, bound(approve, name), methods=["POST"])
    app.add_api_route("/google/token", bound(token, "google"), methods=["POST"])
    app.add_api_route("/github/login/oauth/access_token", bound(token, "github"), methods=["POST"])
    return app


class RunningProvider:
    """The provider served by uvicorn in a background thread on 127.0.0.1."""

    def __init__(self) -> None:
        self.state = OAuthProvider()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        port = sock.getsockname()[1]
        self.state.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(build_app(self.state), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test OAuth provider did not start")
            time.sleep(0.02)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)
        self._sock.close()


OPERATOR_EMAIL = "ops@vectorpanda.test"
COOKIE = "__Host-vp_session"


@contextmanager
def dashboard_stack(data_dir: Path, provider: OAuthProvider, **env: str) -> Iterator[Stack]:
    """A ``vectorpanda up`` (one worker) whose dashboard logs in through ``provider``."""
    port = free_port()
    public_url = f"http://localhost:{port}"
    full = {**provider.env(public_url), "VP_OPERATOR_EMAILS": OPERATOR_EMAIL, **env}
    stack = Stack(data_dir=data_dir, port=port, workers=1, env=full).start()
    stack.url = public_url
    try:
        yield stack
    finally:
        stack.stop()


class CookieClient:
    """A browser stand-in for httpx: keeps the ``__Host-`` cookie over http://localhost.

    (httpx's cookie jar, like the standard library's, never sends Secure cookies over
    plain http; Chromium does for localhost. This keeps exactly one cookie, by hand.)
    """

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.session_id: str | None = None
        self.set_cookies: list[str] = []

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if self.session_id:
            headers["Cookie"] = f"{COOKIE}={self.session_id}"
        r = self.http.request(method, url, headers=headers, **kw)
        for raw in r.headers.get_list("set-cookie"):
            self.set_cookies.append(raw)
            name, _, rest = raw.partition("=")
            if name == COOKIE:
                value = rest.split(";", 1)[0]
                self.session_id = value or None
                if "max-age=0" in raw.lower() or "expires=thu, 01 jan 1970" in raw.lower():
                    self.session_id = None
        return r

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def start_login(self, provider: str = "google") -> str:
        """GET /login/<provider>; returns the provider's authorize URL."""
        r = self.get(f"/login/{provider}")
        assert r.status_code == 303, r.text
        return r.headers["location"]

    def finish(self, callback_url: str) -> httpx.Response:
        url = httpx.URL(callback_url)
        return self.get(url.path, params=dict(url.params))

    def login(self, oauth: OAuthProvider, email: str, provider: str = "google") -> httpx.Response:
        return self.finish(oauth.approve(self.start_login(provider), email))

    def csrf(self, path: str = "/dashboard") -> str:
        r = self.get(path)
        assert r.status_code == 200, r.text
        m = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
        assert m, "no CSRF token on the page"
        return m.group(1)

    def close(self) -> None:
        self.http.close()
