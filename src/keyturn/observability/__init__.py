"""Metrics and logging: cross-cutting, the one package every layer may import."""
