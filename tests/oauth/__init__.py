"""Tests of the OAuth authorization server (the staterelay.oauth adapter)."""
