"""``python -m pycron --config configs/pycron.yaml [--data-dir DIR]``: see :mod:`pycron.main`."""

from pycron.main import main

raise SystemExit(main())
