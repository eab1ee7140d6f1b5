"""Alexa Smart Home skill adapter (being built)."""
