"""Collectors: one module per source of facts. None imports another, the store or the metrics."""
