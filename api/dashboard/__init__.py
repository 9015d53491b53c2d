"""The dashboard: OAuth login, server-side sessions and server-rendered pages.

The composition root builds a ``Dashboard`` (``api.dashboard.context``) and
passes it to ``create_app``; without one, the pages answer that the dashboard
is not configured. The pages' router is ``api.dashboard.routes.router``.
"""
