"""``python -m kettle`` runs the command line."""

from kettle.cli import main

raise SystemExit(main())
