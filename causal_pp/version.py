"""The version of causal_pp (one place: the package, the build and the results store read it)."""

from __future__ import annotations

__all__ = ["RESULTS_REVISION", "__version__"]

__version__ = "0.2.0"

#: Revision of the numbers a convergence cell computes under unchanged settings, within a version.
#: Bump it with any change that moves them -- a new default guide, schedule or estimator: the
#: results store keys cells by ``<version>+r<revision>``, so a rerun never reuses cells that the
#: earlier code computed. 2: the structured guide became the batched path's default. 5: a cheaper
#: Normal log density (float rounding moves every fit) and estimate's first batch of 256 units.
#: 6: the importance correction's Newton steps accept a step within float32 rounding (fewer steps;
#: the per-unit proposals, and so the weights, move). 7: SVI's starts run with 2 ELBO particles
#: per step (``SVI.restart_particles``; was the main run's 8). 8: the correction's particles take
#: their log proposal density from their noise (the log weights move in the 13th digit). 9: a
#: Gaussian unit's closed form from a float32 stencil, and the particles in float32 (the log
#: weights move at float32 rounding). 10: the stencil's check probes about the mode it finds, so
#: it no longer declines where its fixed points missed the mode (those chunks' closed form moves
#: at float32 rounding, from the Newton steps' to the stencil's).
RESULTS_REVISION = 10
