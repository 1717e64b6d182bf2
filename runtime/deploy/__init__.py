"""Deployment: a plan rendered as Kubernetes manifests."""
