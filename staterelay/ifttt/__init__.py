"""IFTTT service adapter (being built)."""
