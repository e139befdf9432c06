"""Backtesting: replay a real demand trace through the engine and reference autoscalers."""
