"""python -m micrograd_cy: the command line (see micrograd_cy.cli)."""
import sys

from micrograd_cy.cli import main

sys.exit(main())
