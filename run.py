#!/usr/bin/env python3
"""The quick start's commands, needing only Python 3.11+ on the machine.

    python3 run.py            run the whole system: database, migrations, web, worker
    python3 run.py test       run the full test suite (lint included), as CI does
    python3 run.py stop-db    stop the embedded PostgreSQL
    python3 run.py lock       regenerate requirements*.txt from pyproject.toml

The work is done by `devtools.launcher` (standard library only, like this file).
"""

import sys

from devtools.launcher import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
