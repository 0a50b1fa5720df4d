"""Load tests for banata-middleware: ``python -m loadtests --help``."""
