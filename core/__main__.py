"""``python -m defect_studio``: the same as the ``defect-studio`` command."""

import sys

from defect_studio.cli import main

sys.exit(main())
