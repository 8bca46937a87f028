"""``python -m mogsgd`` runs the command line."""

import sys

from mogsgd.cli import main

sys.exit(main())
