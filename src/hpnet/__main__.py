"""``python -m hpnet`` (also under torchrun) runs the ``hpnet`` command."""
import sys

from .cli import main

sys.exit(main())
