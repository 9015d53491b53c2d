"""Builds the dashboard's parts (providers, session store, audit reads) from Settings."""

from __future__ import annotations

import logging

from api.dashboard.context import Dashboard
from api.dashboard.oauth import GitHubConfig, GitHubLogin, GoogleConfig, GoogleLogin, LoginProvider
from coordinator.sessions.model import SessionPolicy
from projections.audit_reads import AuditReader
from vectorpanda.control_db import audit_database, session_store
from vectorpanda.settings import Settings

log = logging.getLogger("vectorpanda")


def login_providers(settings: Settings) -> dict[str, LoginProvider]:
    """Each provider whose client id and secret are both configured."""
    providers: dict[str, LoginProvider] = {}
    google_secret = settings.google_client_secret
    if settings.google_client_id and google_secret and google_secret.get_secret_value():
        providers["google"] = GoogleLogin(
            GoogleConfig(
                settings.google_client_id,
                google_secret.get_secret_value(),
                settings.google_metadata_url,
            )
        )
    github_secret = settings.github_client_secret
    if settings.github_client_id and github_secret and github_secret.get_secret_value():
        providers["github"] = GitHubLogin(
            GitHubConfig(
                settings.github_client_id,
                github_secret.get_secret_value(),
                settings.github_authorize_url,
                settings.github_token_url,
                settings.github_api_url,
            )
        )
    return providers


def build_dashboard(settings: Settings) -> Dashboard:
    public_url = settings.public_url or f"http://localhost:{settings.port}"
    operators = frozenset(
        e.strip().lower() for e in settings.operator_emails.split(",") if e.strip()
    )
    providers = login_providers(settings)
    if not providers:
        log.info("dashboard: no OAuth provider configured; /login explains how to add one")
    elif settings.public_url is None:
        log.warning(
            "dashboard: VP_PUBLIC_URL is not set; OAuth redirect URIs use %s, which only "
            "works on this machine. Set it to the https:// address users reach.",
            public_url,
        )
    return Dashboard(
        public_url=public_url,
        sessions=session_store(settings),
        audit=AuditReader(audit_database(settings)),
        providers=providers,
        operator_emails=operators,
        policy=SessionPolicy(
            idle_s=settings.session_idle_s,
            absolute_s=settings.session_absolute_s,
            login_timeout_s=settings.login_timeout_s,
        ),
    )
