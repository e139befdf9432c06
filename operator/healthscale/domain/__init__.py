"""The pure decision engine: data and ``now`` in, decisions out. No Kubernetes, no HTTP."""
