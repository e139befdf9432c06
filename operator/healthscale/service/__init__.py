"""Application services: one reconcile cycle, wiring the pure engine to the adapters."""
