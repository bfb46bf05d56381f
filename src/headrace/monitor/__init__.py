"""Monitoring: run and node metrics, Prometheus exposition, alert rules and notifications."""
