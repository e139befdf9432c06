"""Allows ``python -m healthscale``."""

from healthscale import cli

raise SystemExit(cli.main())
