"""`python -m syndicator` runs the command line."""

import sys

from syndicator.cli.main import main

sys.exit(main())
