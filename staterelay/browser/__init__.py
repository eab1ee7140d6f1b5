"""Web plumbing shared by every HTML adapter: sessions, CSRF, rendering and middlewares.

It sits between the adapters (``ui``, ``oauth``) and ``core``: it may import core, errors,
settings, keys, aiohttp and jinja2, and never the store.
"""
