"""Decide layer: pure functions from facts to a plan.  No I/O, no name resolution.

``tests/test_layering.py`` enforces that nothing here imports I/O or network modules.
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
