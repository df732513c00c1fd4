"""`python -m robustfront ...` (and `torchrun -m robustfront train ...`) = the `robustfront` command."""
import sys

from .cli import main

sys.exit(main())
