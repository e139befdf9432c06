"""healthscale's load test (`make loadtest`, tests/integration/test_loadtest.py): a queue of known
capacity served by replica processes behind a balancer, driven by Locust replaying a real trace,
scaled by the real reconcile (``healthscale.service.cycle.run``) and by an HPA-style reactive policy.

Not part of the product: it lives outside ``operator/`` and may read ../shared/traces.
"""
