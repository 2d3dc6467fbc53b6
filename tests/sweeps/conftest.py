"""Fixtures of the sweep tests: a tiny experiment, study files, CLI workers, a real PostgreSQL.

PostgreSQL: ``DAT_LAB_TEST_POSTGRES_URL`` (set by ``.ci/run``) names a server to use. Without
it, a throwaway cluster is made with the local PostgreSQL binaries (``initdb`` in a temporary
directory, run as the ``postgres`` user when we are root, on a free loopback port, password
authentication) and removed afterwards. Without either, the PostgreSQL tests are skipped,
unless ``DAT_LAB_REQUIRE_POSTGRES=1`` (CI), where they fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import (
    POSTGRES_URL_ENV,
    REQUIRE_POSTGRES_ENV,
    TEST_PASSWORD,
    TINY_DATA,
    TINY_TRAIN,
    write_yaml,
)

from dat_lab.flops.count import CACHE_ENV


@pytest.fixture(scope="session", autouse=True)
def private_caches(tmp_path_factory):
    """FLOP counts and shapes images go to private directories, never the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("flop_cache")))
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))
    mp.setenv("OMP_NUM_THREADS", "1")
    yield
    mp.undo()


@pytest.fixture
def experiment(tmp_path: Path):
    """Write a tiny experiment file; keyword arguments update its data/train sections."""

    def make(data: dict[str, Any] | None = None, train: dict[str, Any] | None = None) -> Path:
        base = {
            "model": "dat_nano",
            "data": {**TINY_DATA, **(data or {})},
            "train": {**TINY_TRAIN, **(train or {})},
        }
        return write_yaml(
            tmp_path / "experiment.yaml", {"name": "tiny", "seeds": [0], "base": base}
        )

    return make


@pytest.fixture
def study_file(tmp_path: Path, experiment):
    """Write a study file over the tiny experiment; ``study_file(name, **keys)``."""

    def make(name: str = "tiny_grid", exp: Path | None = None, **keys: Any) -> Path:
        exp = exp or experiment()
        data = {"name": name, "experiment": str(exp), **keys}
        return write_yaml(tmp_path / f"{name}.yaml", data)

    return make


# -- PostgreSQL --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary directory, for one test session."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="dat_lab_pg_"))
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0  # initdb refuses to run as root

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> str:
        if self.as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        data = self.dir / "data"
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
        )
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(self.dir / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        import psycopg2

        conn = psycopg2.connect(
            host=str(self.dir), port=self.port, user="postgres", dbname="postgres"
        )
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE ROLE dat_lab LOGIN PASSWORD '{TEST_PASSWORD}'")
            cur.execute("CREATE DATABASE dat_lab_test OWNER dat_lab")
        conn.close()
        return f"postgresql://dat_lab:{TEST_PASSWORD}@127.0.0.1:{self.port}/dat_lab_test"

    def stop(self) -> None:
        try:
            self._run(
                str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop"
            )
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of a real PostgreSQL database the tests may create studies in."""
    given = os.environ.get(POSTGRES_URL_ENV)
    if given:
        yield given
        return
    bin_dir = _pg_bin()
    if bin_dir is None:
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(f"no PostgreSQL: set {POSTGRES_URL_ENV} or install the postgresql package")
        pytest.skip(f"no PostgreSQL server ({POSTGRES_URL_ENV} unset, no initdb found)")
    server = ThrowawayPostgres(bin_dir)
    started = time.monotonic()
    url = server.start()
    print(f"throwaway PostgreSQL on port {server.port} in {time.monotonic() - started:.1f} s")
    try:
        yield url
    finally:
        server.stop()
