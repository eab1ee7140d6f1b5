"""The SQLite store: StateRelay's default, embedded engine, one module per aggregate."""
