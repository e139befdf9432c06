"""Edges that talk to the outside: Prometheus and the Kubernetes API server."""
