"""`python -m simulator`: the simulator without the rest of the `lingtan` command line."""

from simulator.cli import main

raise SystemExit(main())
