"""A real single-node SLURM cluster for the end-to-end tests, started and stopped by the test.

Debian's ``slurm-wlm``, ``slurmdbd``, ``munge`` and ``mariadb-server`` (installed by ``.ci/run``)
run as root on localhost, each with its configuration, state, sockets, pid and log files in one
private folder: MUNGE authenticates, MariaDB holds the accounting database, ``slurmdbd`` serves
it (the Snakemake SLURM executor asks ``sacct`` for job states), ``slurmctld`` schedules and
``slurmd`` runs the jobs. No cgroups: processes are tracked by ``proctrack/linuxproc`` and tasks
are not confined (``task/none``), which works inside containers. Nothing outside the folder is
written, and every daemon is stopped on exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from mlflow_server import free_port

#: Programs the cluster needs (Debian packages slurm-wlm, slurmdbd, munge, mariadb-server).
PROGRAMS = (
    "munged",
    "mariadb-install-db",
    "mariadbd",
    "slurmdbd",
    "slurmctld",
    "slurmd",
    "sacctmgr",
    "sbatch",
    "sacct",
    "sinfo",
    "squeue",
    "scancel",
)
#: Where SLURM's commands look for the configuration when ``SLURM_CONF`` is not set. The SLURM
#: executor's job step drops ``SLURM_*`` variables before it calls ``srun`` inside a job, so the
#: test cluster's configuration must be found here; it is linked in place while the cluster runs.
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
INSTALL_HINT = (
    "apt-get install slurm-wlm slurmdbd munge mariadb-server (as root; .ci/run does this)"
)


def slurm_unavailable_reason() -> str | None:
    """Why a SLURM cluster cannot be started here, or None when it can.

    Returns
    -------
    str or None
        The missing programs and how to install them, or that the daemons need root.
    """
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        return f"SLURM test cluster unavailable: {', '.join(missing)} not found; {INSTALL_HINT}."
    if os.geteuid() != 0:
        return "SLURM test cluster unavailable: its daemons (slurmd, munged) must run as root."
    if DEFAULT_CONF.exists() and not _is_test_link(DEFAULT_CONF):
        return (
            f"SLURM test cluster unavailable: {DEFAULT_CONF} exists (a real SLURM installation); "
            "the test cluster would have to replace it."
        )
    return None


def _is_test_link(path: Path) -> bool:
    """Whether ``path`` is a link to a test cluster's configuration (live or left behind)."""
    return path.is_symlink() and Path(os.readlink(path)).parent.name.startswith("omics-ml-slurm-")


def _memory_mb() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    msg = "/proc/meminfo has no MemTotal line"
    raise RuntimeError(msg)


class SlurmCluster:
    """Single-node SLURM with accounting, in a private folder under the system temp dir.

    Parameters
    ----------
    account : str
        SLURM account created for the calling user (jobs may name it with ``-A``).
    partition : str
        Name of the one (default) partition.
    start_timeout : float
        Seconds each daemon has to come up.

    Attributes
    ----------
    directory : Path
        Configuration, state, sockets and logs. Mode 0755 and directly under ``/tmp``: MUNGE
        refuses a socket whose folders are not searchable by all, and UNIX socket paths are short.
    env : dict
        The environment for SLURM clients: ``os.environ`` plus ``SLURM_CONF``.
    """

    cluster_name = "omicsml"

    def __init__(
        self, *, account: str = "omics", partition: str = "main", start_timeout: float = 60
    ) -> None:
        self.account = account
        self.partition = partition
        self.start_timeout = start_timeout
        self.directory = Path(tempfile.mkdtemp(prefix="omics-ml-slurm-", dir="/tmp"))
        self.directory.chmod(0o755)
        self.node = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.memory_mb = int(_memory_mb() * 0.8)
        self.ports = {name: free_port() for name in ("db", "dbd", "ctld", "d")}
        self.env = {**os.environ, "SLURM_CONF": str(self.directory / "slurm.conf")}
        # Daemons in start order: pid files of those that fork, the process of MariaDB.
        self._daemons: list[Path | subprocess.Popen[bytes]] = []
        self._linked = False

    # --- configuration ---------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.directory / name

    def _write_configs(self) -> None:
        d, munge = self.directory, self._path("munge.socket")
        key = self._path("munge.key")
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        for sub in ("state", "spool"):
            (d / sub).mkdir()
        dbd = self._path("slurmdbd.conf")
        dbd.write_text(
            "\n".join(
                [
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={munge}",
                    "DbdHost=localhost",
                    f"DbdPort={self.ports['dbd']}",
                    "SlurmUser=root",
                    "StorageType=accounting_storage/mysql",
                    "StorageHost=127.0.0.1",
                    f"StoragePort={self.ports['db']}",
                    "StorageUser=slurm",
                    "StorageLoc=slurm_acct_db",
                    f"PidFile={d / 'slurmdbd.pid'}",
                    f"LogFile={d / 'slurmdbd.log'}",
                    "",
                ]
            )
        )
        dbd.chmod(0o600)  # slurmdbd refuses a readable config (it may hold the DB password)
        self._path("slurm.conf").write_text(
            "\n".join(
                [
                    f"ClusterName={self.cluster_name}",
                    f"SlurmctldHost={self.node}",
                    f"SlurmctldPort={self.ports['ctld']}",
                    f"SlurmdPort={self.ports['d']}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={munge}",
                    f"StateSaveLocation={d / 'state'}",
                    f"SlurmdSpoolDir={d / 'spool'}",
                    f"SlurmctldPidFile={d / 'slurmctld.pid'}",
                    f"SlurmdPidFile={d / 'slurmd.pid'}",
                    f"SlurmctldLogFile={d / 'slurmctld.log'}",
                    f"SlurmdLogFile={d / 'slurmd.log'}",
                    # No cgroups in a container: track processes by parent pid, confine nothing.
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "MpiDefault=none",
                    "JobAcctGatherType=jobacct_gather/linux",
                    "JobAcctGatherFrequency=5",
                    "AccountingStorageType=accounting_storage/slurmdbd",
                    "AccountingStorageHost=localhost",
                    f"AccountingStoragePort={self.ports['dbd']}",
                    # With slurmdbd, this names the MUNGE socket rather than a password.
                    f"AccountingStoragePass={munge}",
                    "AccountingStoreFlags=job_comment",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "ReturnToService=2",
                    "MinJobAge=600",
                    "KillWait=5",
                    f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
                    f"RealMemory={self.memory_mb} State=UNKNOWN",
                    f"PartitionName={self.partition} Nodes=ALL Default=YES "
                    "MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    # --- daemons ---------------------------------------------------------------------------
    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            msg = f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr}{result.stdout}"
            raise RuntimeError(msg + self.logs())
        return result

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            with suppress(OSError, subprocess.SubprocessError):
                if ready():
                    return
            time.sleep(0.25)
        msg = f"{what} did not come up within {self.start_timeout:.0f} s."
        raise RuntimeError(msg + self.logs())

    def _daemon(self, name: str, *cmd: str) -> None:
        """Start a daemon that forks into the background and writes ``<name>.pid``."""
        pid_file = self._path(f"{name}.pid")
        self._daemons.append(pid_file)
        self._run(*cmd)
        self._wait(f"{name} (pid file)", pid_file.exists)

    def _port_open(self, port: int) -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    def _start_database(self) -> None:
        datadir = self._path("db")
        self._run(
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={datadir}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        )
        # Loopback only, no grant tables: the one client is slurmdbd on this host.
        with self._path("mariadb.log").open("w") as log:
            process = subprocess.Popen(
                [
                    "mariadbd",
                    "--no-defaults",
                    f"--datadir={datadir}",
                    f"--socket={self._path('mariadb.socket')}",
                    f"--port={self.ports['db']}",
                    "--bind-address=127.0.0.1",
                    f"--pid-file={self._path('mariadb.pid')}",
                    "--user=root",
                    "--skip-grant-tables",
                    "--innodb-buffer-pool-size=64M",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._daemons.append(process)
        self._wait("MariaDB", lambda: self._port_open(self.ports["db"]))

    def _node_idle(self) -> bool:
        state = self._run("sinfo", "--noheader", "--format=%t", check=False).stdout.strip()
        return state == "idle"

    def start(self) -> SlurmCluster:
        """Write the configuration and start every daemon; wait until the node is idle.

        Returns
        -------
        SlurmCluster
            ``self``, ready for ``sbatch``.
        """
        self._write_configs()
        if DEFAULT_CONF.is_symlink() and _is_test_link(DEFAULT_CONF):
            DEFAULT_CONF.unlink()  # left by a test cluster that was killed
        DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
        DEFAULT_CONF.symlink_to(self._path("slurm.conf"))
        self._linked = True
        munge = str(self._path("munge.socket"))
        self._daemon(
            "munged",
            "munged",
            f"--key-file={self._path('munge.key')}",
            f"--socket={munge}",
            f"--pid-file={self._path('munged.pid')}",
            f"--log-file={self._path('munged.log')}",
            f"--seed-file={self._path('munged.seed')}",
        )
        self._start_database()
        self._daemon("slurmdbd", "slurmdbd")
        self._wait("slurmdbd", lambda: self._port_open(self.ports["dbd"]))
        self._run("sacctmgr", "-i", "add", "cluster", self.cluster_name)
        self._run("sacctmgr", "-i", "add", "account", self.account, "Description=omics-ml")
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True)
        self._run("sacctmgr", "-i", "add", "user", user.stdout.strip(), f"Account={self.account}")
        self._daemon("slurmctld", "slurmctld")
        self._daemon("slurmd", "slurmd")
        self._wait("the SLURM node", self._node_idle)
        return self

    def stop(self) -> None:
        """Cancel every job, stop the daemons in reverse order and remove the folder."""
        with suppress(OSError, RuntimeError):
            self._run("scancel", "--full", f"--partition={self.partition}", check=False)
        for daemon in reversed(self._daemons):
            if isinstance(daemon, subprocess.Popen):
                daemon.terminate()
                try:
                    daemon.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()
                continue
            with suppress(OSError, ValueError):
                pid = int(daemon.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    os.kill(pid, 0)  # raises once the process is gone
                    time.sleep(0.2)
                os.kill(pid, signal.SIGKILL)
        if self._linked and _is_test_link(DEFAULT_CONF):
            DEFAULT_CONF.unlink()
        shutil.rmtree(self.directory, ignore_errors=True)

    # --- queries ---------------------------------------------------------------------------
    def logs(self) -> str:
        """The tail of every daemon log, for error messages."""
        parts = []
        for log in sorted(self.directory.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"\n--- {log.name} ---\n" + "\n".join(lines))
        return "".join(parts)

    def sacct(self, *fields: str, job_name: str | None = None) -> list[dict[str, str]]:
        """Accounting records of every job (allocations only), one dict per job.

        Parameters
        ----------
        *fields : str
            ``sacct`` format fields, e.g. ``"JobID", "State", "Comment"``.
        job_name : str, optional
            Only jobs of this name (the Snakemake executor names a run's jobs by its run id).

        Returns
        -------
        list of dict
            Field name to value, in job-id order.
        """
        cmd = ["sacct", "--allusers", "--allocations", "--parsable2", "--noheader"]
        cmd += ["--starttime=now-1days", f"--format={','.join(fields)}"]
        if job_name:
            cmd.append(f"--name={job_name}")
        out = self._run(*cmd).stdout
        return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()]

    def run_listing(self, job_name: str) -> str:
        """``sacct``'s table of one run's jobs, as a person would read it."""
        fields = "JobID,JobName%36,Comment%44,Account,Partition,AllocCPUS,ReqMem,State,Elapsed"
        cmd = ["sacct", "--allusers", "--allocations", "--starttime=now-1days"]
        return self._run(*cmd, f"--name={job_name}", f"--format={fields}").stdout

    def squeue(self) -> list[Mapping[str, str]]:
        """Jobs in the queue: id, state and comment."""
        out = self._run("squeue", "--noheader", "--format=%i|%T|%k").stdout
        keys = ("JobID", "State", "Comment")
        return [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines()]

    def scancel(self, job_id: str) -> None:
        """Cancel one job (SIGTERM to its steps, then SIGKILL after ``KillWait``)."""
        self._run("scancel", job_id)


@contextmanager
def slurm_cluster(**options: object) -> Iterator[SlurmCluster]:
    """Start a :class:`SlurmCluster`, yield it, and stop it whatever happens."""
    cluster = SlurmCluster(**options)  # type: ignore[arg-type]
    try:
        yield cluster.start()
    finally:
        cluster.stop()
