"""`python -m lingtan` runs the command line."""

from lingtan.cli import main

raise SystemExit(main())
