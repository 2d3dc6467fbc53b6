"""Where a study lives (a journal file or a database), and the study lock that workers share.

- Default: an Optuna journal file in the run store, ``<store>/sweeps/<study>.journal``
  (``JournalFileBackend``; several times faster than SQLite for local workers, docs/design.md §6).
- ``postgresql://user:password@host/db``: one database for workers on many machines.
- ``sqlite:///file.db`` works for a single worker; SQLite is not recommended for parallel use.

The *study lock* serialises the short bookkeeping steps of all workers of one study (claiming
a trial, failing a dead worker's trial, enqueueing the grid), so a budget is never overrun
and a grid point never enqueued twice. For a journal (or SQLite) it is a lock file beside it
(``dat_lab.experiments.locking``: a dead holder's lock is recovered); for PostgreSQL it is a
session advisory lock, which the server releases when the holder's connection drops.

A password in a URL never reaches a log: :meth:`StorageLocation.masked` prints
``postgresql://user:***@host/db``, and errors from the database driver are redacted. Pass the
URL in the ``DAT_LAB_STORAGE`` environment variable to keep it out of ``ps`` and shell history.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import optuna
import sqlalchemy
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from dat_lab.experiments.locking import RunLocked, acquire
from dat_lab.schema import ConfigError

log = logging.getLogger(__name__)

STORAGE_ENV = "DAT_LAB_STORAGE"
RDB_SCHEMES = ("postgresql", "sqlite")
_USERINFO = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@?#]*):(?P<password>[^@/?#]*)@")
_LOCK_POLL_S = 0.05


class StorageError(RuntimeError):
    """The study storage cannot be opened or used (the message holds no password)."""


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m['head']}:***@", url)


def _password(url: str) -> str | None:
    match = _USERINFO.search(url)
    return unquote(match["password"]) if match and match["password"] else None


@dataclass(frozen=True)
class StorageLocation:
    """A study storage: ``url`` for a database, else ``journal`` (a file path)."""

    url: str | None = None
    journal: Path | None = None

    @classmethod
    def parse(cls, given: str | None, default_journal: Path) -> StorageLocation:
        """``--storage`` (or ``$DAT_LAB_STORAGE``): a database URL or a journal file path."""
        given = given or os.environ.get(STORAGE_ENV) or None
        if given is None:
            return cls(journal=Path(default_journal))
        if "://" not in given:
            return cls(journal=Path(given))
        scheme = given.split("://", 1)[0].split("+", 1)[0].lower()
        if scheme not in RDB_SCHEMES:
            raise ConfigError(
                f"unsupported storage {mask_url(given)!r}; use postgresql://USER:PASSWORD@"
                "HOST/DB, sqlite:///FILE.db, or a journal file path",
                "--storage",
            )
        return cls(url=given)

    @property
    def kind(self) -> str:
        if self.url is None:
            return "journal"
        return "postgresql" if self.url.lower().startswith("postgresql") else "sqlite"

    @property
    def driver_url(self) -> str:
        """The URL given to SQLAlchemy: a bare ``postgresql://`` names psycopg2 (a dependency of
        dat-lab), since SQLAlchemy 2.1 would otherwise look for psycopg 3."""
        assert self.url is not None
        scheme, rest = self.url.split("://", 1)
        return f"postgresql+psycopg2://{rest}" if scheme.lower() == "postgresql" else self.url

    def masked(self) -> str:
        """How to print this storage: the journal path, or the URL without its password."""
        return str(self.journal) if self.url is None else mask_url(self.url)

    def redact(self, text: str) -> str:
        """``text`` (e.g. a driver's error message) with this URL's password removed."""
        if self.url is None:
            return text
        text = mask_url(text)
        secret = _password(self.url)
        for form in {f for f in (secret, quote(secret or "", safe="")) if f}:
            text = text.replace(form, "***")
        return text

    def open(self) -> optuna.storages.BaseStorage:
        """The Optuna storage (a database's tables are created by the first worker)."""
        if self.url is None:
            assert self.journal is not None
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            backend = JournalFileBackend(str(self.journal))
            return optuna.storages.JournalStorage(backend)
        try:
            with self.lock("__schema__"):  # two workers creating the tables at once collide
                return optuna.storages.RDBStorage(
                    self.driver_url, engine_kwargs={"pool_pre_ping": True}
                )
        except Exception as err:  # noqa: BLE001 - the driver's message may quote the URL
            raise StorageError(
                f"cannot open storage {self.masked()}: {self.redact(_first_line(err))}"
            ) from None

    @contextlib.contextmanager
    def lock(self, study_name: str) -> Iterator[None]:
        """Hold the study lock of ``study_name`` (blocks until it is free)."""
        if self.kind == "postgresql":
            with self._advisory_lock(study_name):
                yield
        else:
            with _file_lock(self._lock_path(study_name)):
                yield

    def _lock_path(self, study_name: str) -> Path:
        if self.journal is not None:
            return self.journal.with_name(f"{self.journal.name}.{study_name}.lock")

        database = make_url(self.driver_url).database or "sqlite"
        return Path(database).with_name(f"{Path(database).name}.{study_name}.lock")

    @contextlib.contextmanager
    def _advisory_lock(self, study_name: str) -> Iterator[None]:
        key = int.from_bytes(
            hashlib.sha256(f"dat_lab:{study_name}".encode()).digest()[:8], "big", signed=True
        )
        try:
            engine = _engine(self.driver_url)
            conn = engine.connect()
        except Exception as err:  # noqa: BLE001
            raise StorageError(
                f"cannot connect to {self.masked()}: {self.redact(_first_line(err))}"
            ) from None
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        finally:
            conn.close()


_ENGINES: dict[str, object] = {}


def _engine(url: str):
    """One small engine per URL and process, for the advisory locks."""
    if url not in _ENGINES:
        _ENGINES[url] = sqlalchemy.create_engine(url, poolclass=NullPool)
    return _ENGINES[url]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    waited_since = time.monotonic()
    warned = False
    while True:
        try:
            held = acquire(path)
            break
        except RunLocked as err:
            if not warned and time.monotonic() - waited_since > 60:
                log.warning("waiting for the study lock %s (%s)", path, err)
                warned = True
            time.sleep(_LOCK_POLL_S)
    with held:
        yield


def _first_line(err: Exception) -> str:
    """The first line of an error's message (its type name when the message is empty)."""
    return (str(err).splitlines() or [type(err).__name__])[0]


__all__ = ["STORAGE_ENV", "StorageError", "StorageLocation", "mask_url"]
