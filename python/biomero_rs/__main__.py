"""``python -m biomero_rs``: the ``biomero-rs`` command."""

import sys

from biomero_rs.cli import main

if __name__ == "__main__":
    sys.exit(main())
