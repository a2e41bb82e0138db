"""``python -m onnxprune`` runs the console tool."""

import sys

from .cli import main

sys.exit(main())
