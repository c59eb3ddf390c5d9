"""Deterministic federation simulator: many real nodes, one fake network, virtual time.

Describe an experiment with :class:`Scenario` and run it with
:func:`run_simulation`; the :class:`SimResult` reports convergence time (virtual),
entries and bytes sent, duplicate deliveries and leaks. See docs/simulator.md.
"""

from .runner import SimResult as SimResult
from .runner import Simulation as Simulation
from .runner import run_simulation as run_simulation
from .runner import run_simulation_async as run_simulation_async
from .runner import seed_trio_scheduler as seed_trio_scheduler
from .scenario import Append as Append
from .scenario import Partition as Partition
from .scenario import Scenario as Scenario
from .scenario import random_topology as random_topology

__all__ = [
    "Append",
    "Partition",
    "Scenario",
    "SimResult",
    "Simulation",
    "random_topology",
    "run_simulation",
    "run_simulation_async",
    "seed_trio_scheduler",
]
