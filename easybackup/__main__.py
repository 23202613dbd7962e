"""`python -m easybackup ...` — the same entry point as bin/easybackup."""

import sys

from easybackup.cli import main

if __name__ == "__main__":
    sys.exit(main())
