"""Starting and stopping a real ``mlflow server`` for the end-to-end tests.

The server keeps its runs and registered models in a SQLite file and proxies artifacts
(``mlflow-artifacts:/``), so clients talk to it over HTTP only and never need access to the
artifact folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now.

    Returns
    -------
    int
        A port number the operating system just handed out and released.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class MlflowServer:
    """A ``mlflow server`` subprocess backed by SQLite, with proxied artifacts.

    Parameters
    ----------
    directory : Path
        Folder for the database (``server.db``), the artifacts (``artifacts/``) and the
        server log (``server.log``).
    port : int or None
        Port to listen on; a free one is picked when None.
    start_timeout : float
        Seconds to wait for ``GET /health`` to answer 200.

    Notes
    -----
    Use it as a context manager: the server is started on entry and stopped on exit. The
    server's optional job-execution runner (a group of background worker processes that only
    GenAI features use) is switched off, which halves the start time.
    """

    def __init__(
        self, directory: Path, port: int | None = None, start_timeout: float = 120
    ) -> None:
        self.directory = Path(directory)
        self.port = port if port is not None else free_port()
        self.start_timeout = start_timeout
        self.uri = f"http://{HOST}:{self.port}"
        self.log_path = self.directory / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """Return the command line that starts the server.

        Returns
        -------
        list of str
            The ``mlflow server`` invocation.
        """
        return [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.directory / 'server.db'}",
            "--serve-artifacts",
            "--artifacts-destination",
            str(self.directory / "artifacts"),
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]

    def log_tail(self, chars: int = 3000) -> str:
        """Return the end of the server log.

        Parameters
        ----------
        chars : int
            How many characters to return at most.

        Returns
        -------
        str
            The last ``chars`` characters of the log, or a note when there is none.
        """
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no server log)"

    def start(self) -> MlflowServer:
        """Start the server and wait until it is healthy.

        Returns
        -------
        MlflowServer
            This server, ready to answer requests.

        Raises
        ------
        RuntimeError
            If the server exits or is not healthy within ``start_timeout`` seconds; the
            message holds the end of its log.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise RuntimeError(
                    f"mlflow server exited with status {code} before it was healthy; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self._healthy():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"mlflow server at {self.uri} was not healthy after {self.start_timeout:.0f} s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self, timeout: float = 20) -> None:
        """Stop the server's whole process group: SIGTERM, then SIGKILL after ``timeout``.

        Parameters
        ----------
        timeout : float
            Seconds to wait for a clean exit before killing.
        """
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Workers may outlive the leader by a moment; make sure the group is gone.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def start_mlflow_server(directory: Path, start_timeout: float = 120) -> Iterator[MlflowServer]:
    """Run a real ``mlflow server`` in ``directory`` for the duration of a ``with`` block.

    Parameters
    ----------
    directory : Path
        Folder for the database, the proxied artifacts and ``server.log``.
    start_timeout : float
        Seconds to wait for the server to become healthy.

    Yields
    ------
    MlflowServer
        The running server; ``.uri`` is its tracking URI.
    """
    with MlflowServer(directory, start_timeout=start_timeout) as server:
        yield server
