"""Operating membot: logs, health and metrics, diagnostics, privacy."""
