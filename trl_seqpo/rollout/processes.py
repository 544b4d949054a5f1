"""The processes a decoding job runs in: one, or several started by `accelerate launch` / `torchrun`.

Offline jobs (`trl-seqpo alpo sample`) split their work over the processes a launcher started, each with its own
copy of the model on its own device. `current_processes` reads the launch (`WORLD_SIZE`, or a process group a caller
already initialised) and, when there are several processes and no process group yet, initialises one through
accelerate's `PartialState` (NCCL on GPUs, gloo on CPU), which also picks this process's device.
On a machine without GPUs accelerate starts no process group under `torchrun`; `current_processes` then starts a gloo
one, so CPU processes split the work too instead of each doing all of it. `launched_processes` only counts them, for
commands that refuse to run in several processes (`trl-seqpo evaluate`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Processes", "current_processes", "launched_processes"]

T = TypeVar("T")


def launched_processes() -> int:
    """How many processes run this job: the initialised process group's size, else `WORLD_SIZE`, else 1."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass
class Processes:
    """This process's place among the job's processes.

    Attributes:
        index: This process's rank (0 is the main process).
        count: How many processes run the job.
        device: The device accelerate assigned to this process (`None` in a single process: the caller's default).
    """

    index: int = 0
    count: int = 1
    device: str | None = None

    @property
    def is_main(self) -> bool:
        """Whether this is the main process (rank 0), the one that writes the shared files."""
        return self.index == 0

    def on_main(self, function: Callable[[], T]) -> T:
        """Run `function` on the main process and give its (picklable) result to every process.

        Works as a barrier: no process returns before the main one has finished `function`. When it raises, the
        main process raises that error and every other process a `RuntimeError` quoting it, so no process is left
        waiting for the others.
        """
        result: Any = None
        error: BaseException | None = None
        if self.is_main:
            try:
                result = function()
            except Exception as exc:  # noqa: BLE001 - re-raised below, on every process
                error = exc
        if self.count > 1:
            import torch.distributed as dist

            message = None if error is None else f"{type(error).__name__}: {error}"
            payload = [(result, message)]
            dist.broadcast_object_list(payload, src=0)
            result, message = payload[0]
            if message is not None and not self.is_main:
                raise RuntimeError(f"the main process stopped ({message})")
        if error is not None:
            raise error
        return result

    def gather(self, value: T) -> list[T]:
        """`value` of every process, in rank order (a collective: every process must call it)."""
        if self.count == 1:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.count
        dist.all_gather_object(values, value)
        return values


def current_processes() -> Processes:
    """The `Processes` of this job, initialising the process group when a launcher started several processes."""
    import torch.distributed as dist

    if launched_processes() == 1:
        return Processes()
    if dist.is_initialized():  # a training script or a test set it up: it also chose the devices
        return Processes(dist.get_rank(), dist.get_world_size())
    from accelerate import PartialState

    state = PartialState()
    count = launched_processes()
    if state.num_processes == count:
        return Processes(state.process_index, state.num_processes, str(state.device))
    # accelerate starts no process group for CPU-only processes under torchrun (each would think it is alone and do
    # the whole job): start gloo from the launcher's environment so that the processes split the work
    if not dist.is_initialized() and all(name in os.environ for name in ("MASTER_ADDR", "MASTER_PORT", "RANK")):
        dist.init_process_group("gloo")
    if dist.is_initialized() and dist.get_world_size() == count:
        return Processes(dist.get_rank(), dist.get_world_size(), str(state.device))
    from trl_seqpo.errors import UserInputError

    raise UserInputError(
        f"WORLD_SIZE says {count} processes but they share no process group (CPU only, no launcher environment); "
        "run one process, or start them with torchrun / accelerate launch"
    )
