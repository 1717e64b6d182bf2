"""Metrics, logs, the access log, live traffic, token usage."""
