"""The demo app that ``banata-mfa demo`` serves: ``pages`` (configuration, templates, static files,
QR code; no framework), ``app`` (Starlette) and ``wsgi`` (Werkzeug) routing to them."""
