"""`python -m batglitch`: the same command line as the `batglitch` script."""

import sys

from batglitch.cli import main

sys.exit(main())
