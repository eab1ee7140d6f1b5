"""Operating an instance for years: the instance lock, backup and restore, device transfer, doctor.

These modules serve the command line; adapters never import them.
"""
