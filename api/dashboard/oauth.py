"""OAuth 2.0 login through Authlib: Google (OpenID Connect) and GitHub.

Authorization code flow with ``state``, PKCE (S256) and, for Google, an
OpenID ``nonce`` checked inside the signed ID token. Redirect URIs are built
from the configured public URL only, never from request headers.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from authlib.integrations.httpx_client import AsyncOAuth2Client


def _authlib() -> Any:
    """Authlib's httpx client and its error class, imported on the first login.

    Authlib and joserfc are some 170 modules (about 3 MiB of memory); a coordinator
    whose dashboard has no provider configured, or that nobody signs in to, never
    loads them.
    """
    import authlib.deprecate

    with warnings.catch_warnings():
        # Authlib 1.9 prefers httpx2 and warns on httpx, which we use; importing
        # authlib.deprecate first lets this filter win over the "always" one it installs.
        warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
        import authlib.integrations.base_client.errors as errors
        import authlib.integrations.httpx_client as client
    return client.AsyncOAuth2Client, errors.OAuthError


def _httpx() -> Any:
    """httpx, imported on first use: with click installed it loads its command line's
    rich and pygments too (about 5 MiB of the coordinator's RSS)."""
    import httpx

    return httpx


HTTP_TIMEOUT_S = 10.0
METADATA_TTL_S = 3600.0


class LoginRefused(Exception):
    """The provider did not vouch for a verified email; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class GoogleConfig:
    client_id: str
    client_secret: str = field(repr=False)
    metadata_url: str = "https://accounts.google.com/.well-known/openid-configuration"


@dataclass(frozen=True, slots=True)
class GitHubConfig:
    client_id: str
    client_secret: str = field(repr=False)
    authorize_url: str = "https://github.com/login/oauth/authorize"
    token_url: str = "https://github.com/login/oauth/access_token"  # noqa: S105 - a URL
    api_url: str = "https://api.github.com"


class LoginProvider(Protocol):
    name: str
    label: str

    async def authorization_url(
        self, redirect_uri: str, state: str, code_verifier: str, nonce: str
    ) -> str: ...

    async def verified_email(
        self, code: str, redirect_uri: str, code_verifier: str, nonce: str
    ) -> str: ...


def _client(client_id: str, secret: str, scope: str, redirect_uri: str) -> AsyncOAuth2Client:
    oauth_client, _ = _authlib()
    client: AsyncOAuth2Client = oauth_client(
        client_id=client_id,
        client_secret=secret,
        scope=scope,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        timeout=HTTP_TIMEOUT_S,
    )
    return client


async def _exchange(client: AsyncOAuth2Client, token_url: str, code: str, verifier: str) -> Any:
    _, oauth_error = _authlib()
    httpx = _httpx()
    try:
        return await client.fetch_token(
            token_url,
            code=code,
            code_verifier=verifier,
            headers={"Accept": "application/json"},
        )
    except (oauth_error, httpx.HTTPError, ValueError) as exc:
        raise LoginRefused("The sign-in provider refused the login code.") from exc


class GoogleLogin:
    """OpenID Connect: the email comes from the signed ID token (nonce, iss, aud, exp)."""

    name = "google"
    label = "Google"

    def __init__(self, config: GoogleConfig) -> None:
        self.config = config
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None or time.monotonic() - self._metadata_at > METADATA_TTL_S:
            async with _httpx().AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
                r = await http.get(self.config.metadata_url)
                r.raise_for_status()
                self._metadata = dict(r.json())
                self._metadata_at = time.monotonic()
        return self._metadata

    async def authorization_url(
        self, redirect_uri: str, state: str, code_verifier: str, nonce: str
    ) -> str:
        meta = await self.metadata()
        cfg = self.config
        async with _client(cfg.client_id, cfg.client_secret, "openid email", redirect_uri) as c:
            url, _ = c.create_authorization_url(
                meta["authorization_endpoint"],
                state=state,
                code_verifier=code_verifier,
                nonce=nonce,
            )
        return str(url)

    async def verified_email(
        self, code: str, redirect_uri: str, code_verifier: str, nonce: str
    ) -> str:
        httpx = _httpx()
        try:
            meta = await self.metadata()
        except (httpx.HTTPError, ValueError) as exc:
            raise LoginRefused("The sign-in provider could not be reached.") from exc
        cfg = self.config
        async with _client(cfg.client_id, cfg.client_secret, "openid email", redirect_uri) as c:
            token = await _exchange(c, meta["token_endpoint"], code, code_verifier)
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise LoginRefused("The sign-in provider sent no ID token.")
        from joserfc import jwt
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
                r = await http.get(meta["jwks_uri"])
                r.raise_for_status()
                keys = KeySet.import_key_set(r.json())
            decoded = jwt.decode(id_token, keys, algorithms=["RS256", "ES256"])
            jwt.JWTClaimsRegistry(
                leeway=60,
                iss={"essential": True, "value": meta["issuer"]},
                aud={"essential": True, "value": cfg.client_id},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
                email={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, httpx.HTTPError, ValueError, KeyError) as exc:
            raise LoginRefused("The sign-in provider's ID token did not check out.") from exc
        if decoded.claims.get("email_verified") is not True:
            raise LoginRefused("That email address is not verified with the provider.")
        return str(decoded.claims["email"])


class GitHubLogin:
    """OAuth 2.0 with PKCE; the email is the account's primary verified one."""

    name = "github"
    label = "GitHub"

    def __init__(self, config: GitHubConfig) -> None:
        self.config = config

    async def authorization_url(
        self, redirect_uri: str, state: str, code_verifier: str, nonce: str
    ) -> str:
        cfg = self.config
        async with _client(cfg.client_id, cfg.client_secret, "user:email", redirect_uri) as c:
            url, _ = c.create_authorization_url(
                cfg.authorize_url, state=state, code_verifier=code_verifier
            )
        return str(url)

    async def verified_email(
        self, code: str, redirect_uri: str, code_verifier: str, nonce: str
    ) -> str:
        cfg = self.config
        _, oauth_error = _authlib()
        httpx = _httpx()
        async with _client(cfg.client_id, cfg.client_secret, "user:email", redirect_uri) as c:
            token = await _exchange(c, cfg.token_url, code, code_verifier)
            try:
                r = await c.get(
                    f"{cfg.api_url.rstrip('/')}/user/emails",
                    headers={"Accept": "application/vnd.github+json"},
                )
                r.raise_for_status()
                emails = r.json()
            except (oauth_error, httpx.HTTPError, ValueError) as exc:
                raise LoginRefused("The sign-in provider did not share an email.") from exc
        del token
        for entry in emails if isinstance(emails, list) else []:
            if isinstance(entry, dict) and entry.get("primary") and entry.get("verified") is True:
                return str(entry["email"])
        raise LoginRefused("Your GitHub account has no verified primary email address.")
