"""Grafana dashboards: load the JSON in `dashboards/` and push it with its datasource to Grafana.

The code is in `app.dashboards.push`; this package imports nothing itself, so that `lingtan`
registering its `dashboards` subcommand does not load the Grafana client (and its HTTP stack)
into every command's start-up, `lingtan collect`'s included.
"""
