"""A real multi-node Ray cluster on this machine: one head and N worker nodes, each its own raylet.

``python -m infra.local_cluster up`` starts ``ray start --head`` and ``--workers`` worker nodes (``ray start
--address``), each with ``--num-cpus 1`` (by default), its own ``--temp-dir`` and its own ports, all bound to
127.0.0.1. Every node runs ``--block`` in its own process group, so ``down`` (or a test) stops exactly the
processes it started: ``ray stop`` would kill every Ray instance on the machine. The cluster's PIDs and
addresses are written to ``<dir>/cluster.json``; ``RAY_ADDRESS=<job server> make build-dataset`` submits to it.

Used by ``make cluster-up`` / ``make cluster-down`` and by ``tests/test_cluster.py`` (node, driver and head
kills). On a real cluster the same CLI runs on every machine instead (see infra/RUNBOOK.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "cluster.json"
# Ray's own variables for a throwaway loopback cluster: no usage stats, no token auth (Ray turns auth on when
# ~/.ray/auth_token exists), and the offline variables every entry point sets.
CLUSTER_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


@dataclass
class Node:
    """One ``ray start --block`` process (the leader of its process group) and where it keeps its files."""

    role: str  # "head" or "worker-<i>"
    pid: int
    temp_dir: str
    log: str


@dataclass
class LocalCluster:
    gcs_address: str  # 127.0.0.1:<port>: what `ray start --address` and ray.init(address=...) take
    job_address: str  # http://127.0.0.1:<port>: the job server, for RAY_ADDRESS / `ray job submit`
    root: str
    nodes: list[Node] = field(default_factory=list)

    @property
    def head(self) -> Node:
        return self.nodes[0]

    @property
    def workers(self) -> list[Node]:
        return self.nodes[1:]

    def save(self) -> Path:
        path = Path(self.root) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, root: str | Path) -> LocalCluster:
        data = json.loads((Path(root) / STATE_FILE).read_text())
        return cls(**{**data, "nodes": [Node(**n) for n in data["nodes"]]})


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held open together so the kernel cannot hand one out twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def ray_executable() -> str:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.is_file() else "ray"


def _node_ports() -> list[str]:
    """Per-node ports that default to fixed numbers (and would collide between nodes on one machine)."""
    names = [
        "node-manager-port",
        "object-manager-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "runtime-env-agent-port",
        "metrics-export-port",
    ]
    return [f"--{name}={port}" for name, port in zip(names, free_ports(len(names)), strict=True)]


def _start_node(role: str, args: list[str], root: Path, env: dict[str, str]) -> Node:
    # Ray's socket paths must fit 107 bytes: a short temp dir of its own per node, under /tmp.
    temp_dir = tempfile.mkdtemp(prefix=f"lc-{role[:6]}-", dir="/tmp")
    log_path = root / f"{role}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [ray_executable(), "start", "--block", f"--temp-dir={temp_dir}", "--disable-usage-stats", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped by killpg, nothing else is touched
        )
    return Node(role=role, pid=proc.pid, temp_dir=temp_dir, log=str(log_path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def wait_until_ready(cluster: LocalCluster, timeout_s: float = 240.0) -> None:
    """Until the job server answers and every node is alive in the GCS; a node that exits fails with its log."""
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import list_nodes

    deadline = time.monotonic() + timeout_s
    while True:
        for node in cluster.nodes:
            if not _alive(node.pid):
                raise RuntimeError(
                    f"{node.role} exited during start-up:\n{Path(node.log).read_text()[-3000:]}"
                )
        try:
            JobSubmissionClient(cluster.job_address).list_jobs()
            alive = [n for n in list_nodes(address=cluster.gcs_address) if n.state == "ALIVE"]
            if len(alive) == len(cluster.nodes):
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the local cluster under {cluster.root} did not come up in {timeout_s:.0f} s")
        time.sleep(2)


def start_cluster(
    root: str | Path,
    workers: int = 2,
    cpus_per_node: int = 1,
    object_store_bytes: int = 400_000_000,
    head_cpus: int | None = None,
) -> LocalCluster:
    """Start a head and ``workers`` worker nodes on 127.0.0.1; returns when all are up."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(CLUSTER_ENV)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    gcs_port, dashboard_port, client_port = free_ports(3)
    cluster = LocalCluster(f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dashboard_port}", str(root))
    common = ["--node-ip-address=127.0.0.1", f"--object-store-memory={object_store_bytes}"]
    head_args = [
        "--head",
        f"--port={gcs_port}",
        f"--num-cpus={cpus_per_node if head_cpus is None else head_cpus}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--ray-client-server-port={client_port}",
    ]
    try:
        cluster.nodes.append(_start_node("head", [*head_args, *common, *_node_ports()], root, env))
        cluster.save()
        wait_until_ready(cluster)
        for _ in range(workers):
            add_worker(cluster, cpus_per_node, object_store_bytes, wait=False)
        wait_until_ready(cluster)
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def add_worker(
    cluster: LocalCluster, cpus: int = 1, object_store_bytes: int = 400_000_000, wait: bool = True
) -> Node:
    """Join one more worker node (e.g. to replace a killed one)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(CLUSTER_ENV)
    args = [
        f"--address={cluster.gcs_address}",
        f"--num-cpus={cpus}",
        "--node-ip-address=127.0.0.1",
        f"--object-store-memory={object_store_bytes}",
        *_node_ports(),
    ]
    node = _start_node(f"worker-{len(cluster.nodes) - 1}", args, Path(cluster.root), env)
    cluster.nodes.append(node)
    cluster.save()
    if wait:
        wait_until_ready(cluster)
    return node


def raylet_pid(node: Node) -> int:
    """The raylet of ``node``: the process named ``raylet`` in its process group."""
    import psutil

    for child in psutil.Process(node.pid).children(recursive=True):
        if child.name() == "raylet":
            return child.pid
    raise LookupError(f"{node.role} (pid {node.pid}) has no raylet")


def node_processes(node: Node) -> list[int]:
    """PIDs of ``node``: its ``ray start`` process and every descendant. Job drivers run in a session of their
    own (Ray starts them so), so the process group alone would miss them."""
    import psutil

    try:
        leader = psutil.Process(node.pid)
        return [node.pid, *(p.pid for p in leader.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def kill_node(node: Node, sig: int = signal.SIGKILL) -> None:
    """Signal every process of ``node`` (its raylet, workers, drivers, the GCS on the head); reap the leader."""
    for pid in node_processes(node):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + 15
    while _alive(node.pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(node.pid, os.WNOHANG)
        time.sleep(0.2)


def stop_cluster(cluster: LocalCluster) -> None:
    """Stop the nodes this cluster started (workers first), SIGTERM then SIGKILL; nothing else is touched."""
    import shutil

    for node in reversed(cluster.nodes):
        pids = node_processes(node)
        kill_node(node, signal.SIGTERM)
        for pid in pids:  # whatever ignored SIGTERM (or was orphaned by it)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(node.temp_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local_cluster", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--dir", default="output/cluster", help="where cluster.json and node logs go")
    parser.add_argument("--workers", type=int, default=2, help="worker nodes besides the head (default 2)")
    parser.add_argument("--num-cpus", type=int, default=1, help="CPUs each node offers (default 1)")
    args = parser.parse_args(argv)
    if args.action == "up":
        if (Path(args.dir) / STATE_FILE).is_file():
            print(f"error: {Path(args.dir) / STATE_FILE} exists: run `down` first", file=sys.stderr)
            return 2
        cluster = start_cluster(args.dir, workers=args.workers, cpus_per_node=args.num_cpus)
        print(f"cluster up: {len(cluster.nodes)} nodes; state in {cluster.save()}")
        print(f"  export RAY_ADDRESS={cluster.job_address}   # then: make build-dataset")
        return 0
    state = Path(args.dir) / STATE_FILE
    if not state.is_file():
        print(f"no cluster recorded in {state}", file=sys.stderr)
        return 1 if args.action == "status" else 0
    cluster = LocalCluster.load(args.dir)
    if args.action == "status":
        for node in cluster.nodes:
            print(
                f"{node.role:10s} pid {node.pid:>7d} {'alive' if _alive(node.pid) else 'gone'}  {node.temp_dir}"
            )
        print(f"job server: {cluster.job_address}")
        return 0
    stop_cluster(cluster)
    state.unlink()
    print("cluster down")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
