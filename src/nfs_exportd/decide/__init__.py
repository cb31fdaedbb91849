"""Decide layer: pure functions from facts to a plan.  No I/O, no name resolution.

The ``decide-pure`` contract in ``.importlinter`` (run by ``make test``) forbids any
I/O, network or outer-layer import here; ``tests/test_import_contracts.py`` also checks
what importing it loads at run time.
"""

from .plan import CHANGE_ONLY_REASONS, HOLD_REASONS, Action, Change, Hold, Plan, Reason
from .reconcile import DecideInput, Policy, decide, project_filename, public_filename

__all__ = [
    "CHANGE_ONLY_REASONS",
    "HOLD_REASONS",
    "Action",
    "Change",
    "DecideInput",
    "Hold",
    "Plan",
    "Policy",
    "Reason",
    "decide",
    "project_filename",
    "public_filename",
]
