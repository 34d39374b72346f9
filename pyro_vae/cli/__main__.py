"""``python -m pyro_vae.cli ...`` (and ``torchrun ... -m pyro_vae.cli train ...``)."""

import sys

from . import main

sys.exit(main())
