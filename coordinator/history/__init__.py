"""A client as of any moment, folded from the event log (issue 17).

``moments`` parses times, ``model`` folds, ``service`` reads one client's
events and answers the admin API, the dashboard and ``vectorpanda audit
state`` / ``audit changes``.
"""
