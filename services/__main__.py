"""``python -m newswatch`` runs the CLI (used by ``up`` to start the services)."""

from newswatch.cli import main

raise SystemExit(main())
