"""The Ray cluster as benchctl sees it: `--load-generators ray[:ADDRESS]` parsed, joined, its nodes listed.

Ray is imported here, on use, and nowhere else in benchctl outside the sweep's executor: a run without
--load-generators never loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchctl.backend import BackendError


class GeneratorError(BackendError):
    """--load-generators / --generator-nodes that cannot work as given (exit code 2, before the run starts)."""


@dataclass(slots=True)
class NodeInfo:
    node_id: str
    ip: str
    cpus: float
    gpus: float
    resources: dict[str, float]


def parse_load_generators(value: str) -> str | None:
    """`ray` -> None (RAY_ADDRESS, or a cluster `ray start` made here, else a new local one: Ray's own rule),
    `ray:auto` -> "auto", `ray:HOST:PORT` or `ray:ray://HOST:PORT` -> that address."""
    kind, sep, address = value.partition(":")
    if kind != "ray" or (sep and not address.strip()):
        raise GeneratorError(
            f"--load-generators must be ray or ray:ADDRESS (ray:auto, ray:HOST:6379, "
            f"ray:ray://HOST:10001), got {value!r}"
        )
    return address.strip() or None


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise GeneratorError("--load-generators ray needs the `ray` package: pip install 'benchctl[ray]'") from None
    return ray


def connect(address: str | None) -> Any:
    """Ray, joined to the cluster at `address` (a session that already joined one keeps it)."""
    ray = import_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = address or "RAY_ADDRESS / this machine"
            raise GeneratorError(f"cannot join the Ray cluster at {where}: {' '.join(str(e).split())[:300]}") from None
    return ray


def alive_nodes(ray: Any) -> list[NodeInfo]:
    """Nodes that are alive now, with their total (not free) CPUs and GPUs."""
    out = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        res = dict(node.get("Resources") or {})
        out.append(
            NodeInfo(
                node_id=node["NodeID"],
                ip=node.get("NodeManagerAddress", "?"),
                cpus=res.get("CPU", 0.0),
                gpus=res.get("GPU", 0.0),
                resources=res,
            )
        )
    return out


def check_generators(load_generators: str | None, generator_nodes: int, client_processes: int = 1) -> None:
    """Everything about the options that can be wrong, found before the run folder exists: the value's form, Ray
    installed, the cluster reachable, enough nodes with enough CPUs for one generator each."""
    if load_generators is None:
        if generator_nodes != 1:
            raise GeneratorError("--generator-nodes needs --load-generators ray[:ADDRESS]")
        return
    address = parse_load_generators(load_generators)
    if generator_nodes < 1:
        raise GeneratorError(f"--generator-nodes must be >= 1, got {generator_nodes}")
    ray = connect(address)
    fit = [n for n in alive_nodes(ray) if n.cpus >= client_processes]
    if len(fit) < generator_nodes:
        raise GeneratorError(
            f"--generator-nodes {generator_nodes}: the Ray cluster has {len(fit)} alive node(s) "
            f"with >= {client_processes} CPU(s) (one load generator per node, "
            f"{client_processes} CPU(s) each with --client-processes {client_processes})"
        )


def short(node_id: str) -> str:
    """A node id as people quote it (Ray's own logs print the first 8 hex digits)."""
    return node_id[:8]
