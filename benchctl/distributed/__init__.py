"""Beyond one machine: load generators on a Ray cluster, sweep cells placed one per node (docs/distributed.md).

- driver.DistributedClient: `--load-generators ray[:ADDRESS] --generator-nodes N`, the one schedule split over N
  Ray actors (actor.GeneratorActor) pinned one per node, one clock (clock), records streamed to one sink;
- cells.NodeExecutor: sweep cells one per node, each with all of its node's CPUs and GPUs;
- cluster: the option parsed, the cluster joined, its nodes listed, the pre-run checks.

Nothing here imports Ray at module level: only a run or sweep that asks for a cluster loads it.
"""

from benchctl.distributed.cluster import GeneratorError, check_generators, parse_load_generators
from benchctl.distributed.driver import DistributedClient, DistributedResult

__all__ = ["DistributedClient", "DistributedResult", "GeneratorError", "check_generators", "parse_load_generators"]
