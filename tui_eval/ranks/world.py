"""The processes of a data-parallel run, as torchrun starts them (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` in the environment).

Generation needs no gradients, so the processes exchange only decisions and reports:
rank 0 decides (resume, output directory, batch size) and broadcasts over a gloo process
group, and every other rank reports its events through torch.distributed's key-value store
(``RankEventSender``), which rank 0 reads in a thread (``RankEventCollector``) and writes to
the run's one events.jsonl. Nothing here waits on a rank once the batches run: a rank that
dies only stops sending, and torchrun stops the others.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from tui_eval.config import EvalConfig
from tui_eval.errors import UsageError
from tui_eval.events import Event, EventSink, event_from_dict

# Rank 0 may tune the batch size or load a large model while the others wait for it.
DECISION_TIMEOUT = timedelta(hours=2)
STORE_TIMEOUT = timedelta(minutes=5)
POLL_INTERVAL_S = 0.2
KEY_PREFIX = "tui-eval/"


@dataclass
class World:
    """This process's place among the run's processes; ``World()`` is a run of one."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    store: Any = None  # torch.distributed.Store, once joined

    @property
    def several(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def join(self) -> None:
        """Join the process group (gloo: only small objects travel) and open the store."""
        if not self.several or self.store is not None:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=DECISION_TIMEOUT)
        client = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                               is_master=False, timeout=STORE_TIMEOUT,
                               wait_for_workers=False)
        self.store = dist.PrefixStore(KEY_PREFIX, client)

    def broadcast(self, value: Any = None) -> Any:
        """Rank 0's ``value``, on every rank."""
        if not self.several:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def leave(self) -> None:
        if self.store is None:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        self.store = None


def world_from_env(environ: Mapping[str, str] | None = None) -> World:
    """The world torchrun describes, or a world of one outside torchrun."""
    environ = os.environ if environ is None else environ
    values = {}
    for name, default in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)):
        text = environ.get(name, "")
        try:
            values[name] = int(text) if text.strip() else default
        except ValueError:
            raise UsageError(f"environment variable {name}={text!r}: not a whole number") \
                from None
    size, rank, local_rank = values["WORLD_SIZE"], values["RANK"], values["LOCAL_RANK"]
    if size <= 1:
        return World()
    if not 0 <= rank < size:
        raise UsageError(f"environment variable RANK={rank}: outside 0..{size - 1}")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not environ.get(name):
            raise UsageError(f"WORLD_SIZE={size} but {name} is not set; start the run with "
                             "torchrun (or tui-eval --gpus N)")
    return World(rank=rank, size=size, local_rank=local_rank)


class RankTag:
    """Tags the events of this process with its rank (a run of several)."""

    def __init__(self, sink: EventSink, rank: int) -> None:
        self.sink = sink
        self.rank = rank

    def __call__(self, event: Event) -> None:
        self.sink(dataclasses.replace(event, rank=self.rank) if event.rank is None else event)


class RankEventSender(RankTag):
    """The event sink of a rank other than 0: each event, tagged with the rank, goes to the
    store, where rank 0 collects it. A slot is reserved before it is filled, so a line
    logged from a signal handler cannot overwrite one being sent."""

    def __init__(self, store: Any, rank: int) -> None:
        super().__init__(self._send, rank)
        self.store = store

    def _send(self, event: Event) -> None:
        slot = self.store.add(f"events/{self.rank}/count", 1) - 1
        self.store.set(f"events/{self.rank}/{slot}", json.dumps(event.to_dict()))


class RankEventCollector:
    """Rank 0's thread that reads the other ranks' events from the store, in each rank's
    order, and hands them to ``deliver``."""

    def __init__(self, store: Any, size: int, deliver: EventSink) -> None:
        self.store = store
        self.deliver = deliver
        self.next_slot = dict.fromkeys(range(1, size), 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rank events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, after taking every event already sent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.poll()

    def _run(self) -> None:
        while not self._stop.wait(POLL_INTERVAL_S):
            self.poll()

    def poll(self) -> None:
        for rank, slot in self.next_slot.items():
            sent = self.store.add(f"events/{rank}/count", 0)
            while slot < sent:
                key = f"events/{rank}/{slot}"
                if not self.store.check([key]):  # reserved, not yet filled
                    break
                data = self.store.get(key)
                self.store.delete_key(key)
                slot += 1
                event = event_from_dict(json.loads(data))
                if event is not None:
                    self.deliver(event)
            self.next_slot[rank] = slot


def for_rank(config: EvalConfig, local_rank: int) -> EvalConfig:
    """In a run of several processes each holds its own copy of the model: on CUDA the
    rank's own GPU (``cuda:LOCAL_RANK``), elsewhere the device asked for."""
    if config.device_map is not None:
        raise UsageError("device_map spreads one model over the GPUs, while under torchrun "
                         "(or --gpus) each process holds a whole model on its own GPU: use "
                         "one or the other")
    if config.device not in ("auto", "cuda"):
        return config
    import torch

    if not torch.cuda.is_available():
        if config.device == "cuda":
            raise UsageError("--device cuda: torch sees no CUDA GPU on this machine")
        return config
    if local_rank >= torch.cuda.device_count():
        raise UsageError(f"LOCAL_RANK={local_rank} but torch sees "
                         f"{torch.cuda.device_count()} CUDA GPU(s): start at most that many "
                         "processes per node")
    return replace(config, device=f"cuda:{local_rank}")
