"""One module per second factor: its table (``define_table``), its record type and its operations.

A new factor (email codes, several authenticator apps) is a new module here, one line in
``schema.Schema`` and a migration; nothing is added to a shared per-user row.
"""
