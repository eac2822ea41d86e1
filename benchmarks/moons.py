"""Run the side-by-side benchmark: the same as `python -m micrograd_cy bench`."""
import sys

from micrograd_cy.bench import main

sys.exit(main())
