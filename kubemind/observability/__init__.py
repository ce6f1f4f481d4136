"""Observability as code: SLO specs to Prometheus rules, Grafana dashboards, scrape manifests."""
