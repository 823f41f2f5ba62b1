"""QMonit's Grafana dashboards as code: definitions.py holds every panel query, generate.py
writes the dashboard JSON and the provisioning files from them."""
