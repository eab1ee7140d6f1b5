"""The PostgreSQL store: hosted instances, row-level security, one module per aggregate."""
