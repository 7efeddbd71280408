"""Allow ``python -m hello_overt``."""

import sys

from hello_overt.cli import main

sys.exit(main())
