"""The demo app that ``banata-mfa demo`` serves."""
