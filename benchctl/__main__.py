"""`python -m benchctl` is the `benchctl` command."""

import sys

from benchctl.cli import main

sys.exit(main())
