"""Thin adapters: ``starlette`` (any ASGI app) and ``werkzeug`` (any WSGI app)."""
