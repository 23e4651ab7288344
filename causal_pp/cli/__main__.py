"""``python -m causal_pp.cli``: the ``causal-pp`` command."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
