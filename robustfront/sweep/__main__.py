"""python -m robustfront.sweep --config SWEEP.yaml --out DIR [--jobs N] [--executor ...] [--fronts]"""
import sys

from .command import main

sys.exit(main())
