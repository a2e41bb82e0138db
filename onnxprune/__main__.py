"""``python -m onnxprune`` runs the console tool."""

import sys

from .console import main

if __name__ == "__main__":  # worker processes of `search --workers` import this module again
    sys.exit(main())
