"""`python -m telemetry`: see telemetry/cli.py."""

from .cli import main

raise SystemExit(main())
