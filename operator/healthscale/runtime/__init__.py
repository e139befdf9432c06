"""The Kopf operator: handlers, settings and the metrics it exposes."""
