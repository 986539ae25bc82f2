"""``python -m members.data describe PATH [--json]``."""

import sys

from members.data import main

sys.exit(main())
