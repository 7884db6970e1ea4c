"""Retention purges on a target: policy checks, reflection refusals, dry runs, keyset batches.

:mod:`.policy` holds what a policy asks (checked without a database), :mod:`.prepare` checks it
against the live table and builds its statements, :mod:`.purge` runs them in the batches of
:mod:`app.engine.keyset`.
"""

from __future__ import annotations

from app.engine.keyset import BatchLimits, BatchOutcome, BatchReport, BatchStalled, json_cursor
from app.engine.retention.policy import (
    ACTIONS,
    FILTER_OPERATORS,
    PolicyFilter,
    PurgePolicy,
    SurrogateRule,
    check_policy_shape,
    compute_cutoff,
)
from app.engine.retention.prepare import PreparedPurge, prepare_purge
from app.engine.retention.purge import DryRun, dry_run, purge_in_batches, restore_cursor

__all__ = (
    "ACTIONS",
    "FILTER_OPERATORS",
    "BatchLimits",
    "BatchReport",
    "DryRun",
    "PolicyFilter",
    "PreparedPurge",
    "PurgeOutcome",
    "PurgePolicy",
    "PurgeStalled",
    "SurrogateRule",
    "check_policy_shape",
    "compute_cutoff",
    "dry_run",
    "json_cursor",
    "prepare_purge",
    "purge_in_batches",
    "restore_cursor",
)

PurgeOutcome = BatchOutcome
"""How a purge run (segment) ended."""
PurgeStalled = BatchStalled
"""A purge batch kept hitting lock or statement timeouts."""
