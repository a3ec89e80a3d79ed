"""Scheduled strategies: the runner, bar sources (CSV and broker market data) and replay."""
