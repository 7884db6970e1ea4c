"""The service store: SQLAlchemy config, engine pragmas, and migration state."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from advanced_alchemy.config import AlembicAsyncConfig, AsyncSessionConfig
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import ColumnElement, event, select
from sqlalchemy.engine import Connection, ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import class_mapper as mapper_of
from sqlalchemy.sql._typing import _ColumnExpressionArgument

from app.config import Settings
from app.lib.crypto import CHAIN_OPTION, ChainKeyring
from app.lib.errors import connection_dropped

__all__ = (
    "MIGRATIONS_DIR",
    "DetachedRead",
    "create_store_engine",
    "current_revision",
    "head_revision",
    "migrate_store",
    "migration_connection",
    "read_without_transaction",
    "retry_if_dropped",
    "retry_once_if_dropped",
    "store_config",
    "upgrade_store",
)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
POOL_RECYCLE_SECONDS = 1800
"""Pooled connections are replaced after this long, before servers or proxies drop idle ones."""
T = TypeVar("T")
M = TypeVar("M")


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _closed_by_the_server(context: ExceptionContext) -> DBAPIError | None:
    """Report a driver error that left its connection closed as a dropped connection.

    SQLAlchemy asks the dialect about disconnects for DBAPI errors only; when the server's
    termination notice races the next statement, asyncpg raises ``InternalClientError`` ("cannot
    switch to state ...") instead, which would reach the caller as an unexplained error and leave
    the dead connection in the pool. Invalidating it and raising a :class:`DBAPIError` marked
    ``connection_invalidated`` lets :func:`retry_if_dropped` and the workers treat it as the drop it is.
    Parameters are hidden: they may hold what the statement was about to write.
    """
    if context.sqlalchemy_exception is not None or context.connection is None:
        return None
    driver = context.connection.connection.driver_connection
    is_closed = getattr(driver, "is_closed", None)
    if not callable(is_closed) or not is_closed():
        return None
    context.is_disconnect = True  # type: ignore[misc]  # settable, see ExceptionContext.is_disconnect
    return DBAPIError(
        context.statement,
        context.parameters,
        context.original_exception,
        hide_parameters=True,
        connection_invalidated=True,
    )


def create_store_engine(settings: Settings) -> AsyncEngine:
    """One pooled async engine for the service store (WAL and a busy timeout on SQLite).

    No pre-ping (a round trip on every checkout): connections are recycled after
    :data:`POOL_RECYCLE_SECONDS`, and the hot handlers run under :func:`retry_if_dropped`, so a
    connection the server dropped in between costs one retry instead of a ping per request.

    The engine carries the audit chain keyring as an execution option, so every session on it
    appends keyed links (:func:`app.domain.audit.services.append`) without a global.
    """
    url = settings.database_url
    options = {CHAIN_OPTION: ChainKeyring(settings.audit_chain_epoch, settings.chain_keys())}
    if settings.is_sqlite:
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, execution_options=options)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        pool_recycle=POOL_RECYCLE_SECONDS,
        execution_options=options,
    )
    event.listen(engine.sync_engine, "handle_error", _closed_by_the_server)
    return engine


class DetachedRead(Generic[M]):
    """A read of ``model``'s rows, built once, run with Core; its rows come back as instances of
    no session.

    For read-only views on the hot path. Built once (at import), the statement's cache key and
    compiled SQL are computed once per process; building a statement per call spent about a
    third of a read's CPU on its cache key. The ORM's loading (identity map, instance state,
    change tracking) costs about as much CPU again as the statement; these instances are built
    from the row's values only, so nothing tracks them and nothing of them is ever flushed.
    The conditions take their values as :func:`~sqlalchemy.bindparam` placeholders, given by
    name to each call (``expanding=True`` for a list).
    """

    def __init__(
        self,
        model: type[M],
        *where: ColumnElement[bool],
        order_by: Sequence[_ColumnExpressionArgument[Any]] = (),
    ) -> None:
        mapper = mapper_of(model)
        attributes = mapper.column_attrs
        self._new_instance: Callable[[], M] = mapper.class_manager.new_instance
        self._keys = [attribute.key for attribute in attributes]
        columns = [attribute.columns[0] for attribute in attributes]
        self._statement = select(*columns).where(*where).order_by(*order_by)

    async def __call__(self, session: AsyncSession, **values: Any) -> list[M]:
        """The rows matching with ``values`` bound, in the statement's order."""
        await session.flush()  # what the session changed and has not written is read too, as the ORM would
        result = await (await session.connection()).execute(self._statement, values)
        keys, new_instance = self._keys, self._new_instance
        found: list[M] = []
        for row in result:
            # as the ORM's own loading does: values straight into the instance's dict, no
            # attribute events (constructing through __init__ cost a tenth of a GET's CPU)
            instance = new_instance()
            instance.__dict__.update(zip(keys, row, strict=True))
            found.append(instance)
        return found


async def read_without_transaction(session: AsyncSession) -> None:
    """Run a read-only handler's statements in autocommit mode (no BEGIN, no COMMIT round trips).

    Call it before the session's first statement; each statement still sees committed data only
    (what READ COMMITTED gives a transaction on PostgreSQL as well). The pool resets the isolation
    level when the connection is returned.
    """
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


async def retry_once_if_dropped(
    work: Callable[[], Awaitable[T]], before_retry: Callable[[], Awaitable[None]] | None = None
) -> T:
    """Run ``work``; run it once more if its connection turned out to be dropped.

    Only for work whose transaction a drop rolls back whole, so running it again applies it
    once (a drop during the final COMMIT may have applied it: use this where one extra
    application is harmless, such as counting a call, or where the caller's retry is idempotent).
    """
    try:
        return await work()
    except DBAPIError as error:
        if not connection_dropped(error):
            raise
    if before_retry is not None:
        await before_retry()
    return await work()


async def retry_if_dropped(session: AsyncSession, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` in ``session``; run it once more on a fresh connection if the first one
    turned out to be dropped (the server restarted, or ended the idle connection).

    Safe because nothing of ``work`` can have been applied: the session commits only after
    ``work`` returns, a dropped connection loses its open transaction, and autocommit reads
    change nothing. ``work`` must start its transaction afresh (e.g. call
    :func:`read_without_transaction` itself). A drop during the final commit is not retried here:
    a POST is retried by its client, the ``Idempotency-Key`` making that safe.
    """
    return await retry_once_if_dropped(work, session.rollback)


def store_config(settings: Settings, engine: AsyncEngine | None = None) -> SQLAlchemyAsyncConfig:
    """advanced-alchemy configuration: one session per HTTP request, committed on 2xx."""
    return SQLAlchemyAsyncConfig(
        engine_instance=engine or create_store_engine(settings),
        session_config=AsyncSessionConfig(expire_on_commit=False),
        before_send_handler="autocommit",
        session_dependency_key="db_session",
        create_all=False,
        alembic_config=AlembicAsyncConfig(
            script_location=str(MIGRATIONS_DIR),
            version_table_name="alembic_version",
            render_as_batch=True,
        ),
    )


def _alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["database_url"] = url
    return cfg


def head_revision() -> str | None:
    """The newest migration shipped with this build."""
    return ScriptDirectory.from_config(_alembic_config("")).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The migration the store is at, or None when it was never migrated."""

    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(_current)


async def upgrade_store(engine: AsyncEngine, revision: str = "head") -> None:
    """Run ``alembic upgrade`` on the given engine's database."""
    await migrate_store(engine, "upgrade", revision)


async def migrate_store(engine: AsyncEngine, direction: str, revision: str) -> None:
    """Run ``alembic upgrade`` or ``alembic downgrade`` to ``revision`` on the engine's database."""
    from alembic import command

    step = {"upgrade": command.upgrade, "downgrade": command.downgrade}[direction]

    def _migrate(connection: Connection) -> None:
        cfg = _alembic_config(str(connection.engine.url))
        cfg.attributes["connection"] = connection
        step(cfg, revision)

    async with migration_connection(engine) as connection:
        await connection.run_sync(_migrate)


@asynccontextmanager
async def migration_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection to migrate on, committed at the end; on SQLite with foreign keys off meanwhile.

    SQLite changes a table the way Alembic's batch mode does: a new table, the rows copied, the
    old table dropped. With foreign keys enforced, that DROP deletes every row referring to the
    old table through ``ON DELETE CASCADE`` (a request's progress, tasks and recipients). The
    pragma only takes effect outside a transaction, so it is set before and restored after; the
    rows are then checked against every foreign key (``PRAGMA foreign_key_check``).
    """
    sqlite = engine.dialect.name == "sqlite"
    async with engine.connect() as connection:
        if sqlite:
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await connection.commit()
            if (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() != 0:
                msg = "could not turn SQLite's foreign keys off to migrate"
                raise RuntimeError(msg)
        try:
            yield connection
            await connection.commit()
            if sqlite and (broken := (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()):
                msg = f"the migration left {len(broken)} rows breaking a foreign key (in {broken[0][0]})"
                raise RuntimeError(msg)
        finally:
            if sqlite:
                await connection.rollback()
                await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                await connection.commit()
