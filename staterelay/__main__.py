"""`python -m staterelay` runs the command line."""

from __future__ import annotations

from staterelay.launch import main

main()
