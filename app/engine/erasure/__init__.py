"""Erasure (Art. 17): a read-only plan per system, then set-based execution with verification.

How the pieces fit::

    async with engine.connect() as conn:
        plan = await plan_erasure(conn, manifest, identities, options)   # reads only
    outcome = await execute_erasure(engine, manifest, identities, options,
                                    cursor=saved, save_cursor=fenced_write)

The plan lists, per table, the strategy (delete rows / anonymize columns / retain with its legal
basis), the rows affected and the SQL that will run (the subject key shown as a placeholder).
Execution runs one statement per table, children before parents, in one transaction per system;
a table with more rows than ``batch_threshold`` is processed in keyset batches, each its own
transaction, the cursor saved after each so a crash resumes at the next batch. Verification runs
in the same transaction as the statement it checks. A foreign key from outside the subject's data
into a row erasure would delete stops the system before anything changes, unless the manifest's
``on_outside_reference`` says how to treat it.

The package, by responsibility: :mod:`.model` (options, plans, outcomes), :mod:`.target` (the
target as reflected once per run), :mod:`.work` (each table's statements), :mod:`.plan`,
:mod:`.execute`, :mod:`.verify` and :mod:`.worker` (the request worker's handler).
"""

from app.engine.erasure.execute import execute_erasure
from app.engine.erasure.model import (
    ErasureBlocked,
    ErasureOptions,
    ErasureOutcome,
    OutsideReference,
    SaveCursor,
    SystemPlan,
    TablePlan,
    plan_document,
)
from app.engine.erasure.plan import plan_erasure
from app.engine.erasure.worker import run_erasure

__all__ = (
    "ErasureBlocked",
    "ErasureOptions",
    "ErasureOutcome",
    "OutsideReference",
    "SaveCursor",
    "SystemPlan",
    "TablePlan",
    "execute_erasure",
    "plan_document",
    "plan_erasure",
    "run_erasure",
)
