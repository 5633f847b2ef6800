"""A Ray cluster of several nodes on this machine whose worker nodes cannot see the driver's files.

The head runs as usual (``ray start --head``); each worker node runs ``ray start --block`` in its own
mount namespace (``unshare -m``) with an empty tmpfs over the hidden folders, so a trial that reads
or writes a path of the driver's there fails as it would on another machine. Nodes get their own
loopback address (127.0.0.2, ...) and the cluster its own Ray temp folder, so a ``ray.init()``
elsewhere on this machine never joins it. Processes are stopped by id (those whose command line
names this cluster's temp folder, or a node's mount namespace), never by ``ray stop``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).with_name("ray"))


def unshare_works() -> bool:
    """Whether this process may run a command in a new mount namespace and mount a tmpfs there."""
    if shutil.which("unshare") is None or not Path(RAY).is_file():
        return False
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs none /mnt && true"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _own_ports(*flags: str) -> list[str]:
    """Free ports for a node's agents and servers: Ray's defaults (52365, 8265, ...) would
    clash between nodes on one machine, or with another Ray instance here."""
    names = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port")
    names += ("metrics-export-port",)
    return [f"--{name}={_free_port()}" for name in (*names, *flags)]


class LocalCluster:
    """A head on this machine's address (no CPUs: trials never run there) plus worker nodes on
    127.0.0.x, added one by one."""

    def __init__(self, hidden: list[Path], env: dict[str, str] | None = None) -> None:
        self.hidden = [p.resolve() for p in hidden]
        self.temp_dir = tempfile.mkdtemp(prefix="esray-", dir="/tmp")  # short: Ray's socket paths
        self.env = {**os.environ, **(env or {}), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        self.env.pop("RAY_ADDRESS", None)
        self.address = f"127.0.0.1:{_free_port()}"
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self._namespaces: dict[str, str] = {}
        self._logs: list[Path] = []

    def _log(self, name: str) -> Path:
        path = Path(self.temp_dir) / f"{name}.log"
        self._logs.append(path)
        return path

    def start_head(self) -> None:
        port = self.address.rsplit(":", 1)[1]
        cmd = [
            RAY, "start", "--head", f"--port={port}", "--num-cpus=0",
            f"--temp-dir={self.temp_dir}", "--include-dashboard=false", "--disable-usage-stats",
            "--object-store-memory=100000000", *_own_ports("dashboard-port"),
        ]  # fmt: skip
        # a killed node is declared dead after ~1.5 s of missed health checks (default: tens of seconds)
        fast = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500"}
        fast["RAY_health_check_failure_threshold"] = "3"
        with open(self._log("head"), "wb") as log:
            started = subprocess.run(
                cmd, env={**self.env, **fast}, stdout=log, stderr=subprocess.STDOUT, timeout=120, check=False
            )
        if started.returncode != 0:
            raise RuntimeError(f"`ray start --head` failed: {self.logs()}")

    def add_node(
        self, name: str, ip: str, resources: dict[str, float], cpus: int, env: dict[str, str]
    ) -> None:
        """Start a worker node (its own mount namespace: the hidden folders are empty there)."""
        mounts = " && ".join(f"mount -t tmpfs none {shlex.quote(str(p))}" for p in self.hidden)
        start = [
            RAY, "start", f"--address={self.address}", f"--node-ip-address={ip}", f"--num-cpus={cpus}",
            f"--resources={json.dumps(resources)}", "--block", "--disable-usage-stats",
            "--object-store-memory=100000000", f"--temp-dir={self.temp_dir}", *_own_ports(),
        ]  # fmt: skip
        script = f"{mounts} && exec {shlex.join(start)}"
        log = open(self._log(name), "wb")  # noqa: SIM115 - the node writes to it until it stops
        self.nodes[name] = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the namespace exists once unshare has run
            with contextlib.suppress(OSError):
                ns = os.readlink(f"/proc/{self.nodes[name].pid}/ns/mnt")
                if ns != os.readlink("/proc/self/ns/mnt"):
                    self._namespaces[name] = ns
                    return
            time.sleep(0.05)
        raise RuntimeError(f"node {name} did not start its mount namespace: {self.logs()}")

    def _pids(self, namespace: str | None = None) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if namespace is not None:
                    if os.readlink(f"/proc/{proc.pid}/ns/mnt") == namespace:
                        found.append(proc)
                elif self.temp_dir in " ".join(proc.info["cmdline"] or ()) or proc.pid in {
                    p.pid for p in self.nodes.values()
                }:
                    found.append(proc)
            except (OSError, psutil.Error):
                continue
        return found

    def kill_node(self, name: str) -> None:
        """Kill every process of the node at once (raylet, object store, workers), as a power cut would."""
        procs = self._pids(self._namespaces[name])
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=10)
        self.nodes.pop(name).wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self._logs if p.exists()
        )

    def shutdown(self) -> None:
        for name in list(self.nodes):
            with contextlib.suppress(Exception):
                self.kill_node(name)
        procs = self._pids()
        for proc in list(procs):  # the head's agents rename themselves (ray::DashboardAgent)
            with contextlib.suppress(psutil.Error):
                procs += proc.children(recursive=True)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
