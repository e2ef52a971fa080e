"""``python -m npuobs.deploy [--check]``: rewrite (or check) every generated deploy artifact."""

import sys

from npuobs.deploy.sync import main

sys.exit(main())
