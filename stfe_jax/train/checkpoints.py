"""Orbax checkpoints of a run: the last state (to resume) and the best (to use).

``<workdir>/checkpoints/last`` keeps the most recent state with the loop's own
bookkeeping (early-stopping counters, history); ``<workdir>/checkpoints/best``
keeps the state with the best validation metric so far. Beside them sit the
resolved config (``config.json``) and the validation-chosen decision threshold
(``threshold.json``).
"""

from __future__ import annotations

import json
import pathlib

import orbax.checkpoint as ocp

from stfe_jax.train.state import TrainState


class RunCheckpoints:
    """The last and best checkpoints of one run directory."""

    def __init__(self, directory: str | pathlib.Path):
        self.directory = pathlib.Path(directory).absolute()
        # Saved synchronously: the train step donates the state's buffers.
        options = ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, enable_async_checkpointing=False
        )
        self.last = ocp.CheckpointManager(self.directory / "last", options=options)
        self.best = ocp.CheckpointManager(self.directory / "best", options=options)

    @staticmethod
    def _save_args(state: TrainState, loop_state: dict):
        return ocp.args.Composite(
            state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop_state)
        )

    def save_last(self, state: TrainState, loop_state: dict) -> None:
        """Saves ``state`` and the JSON-able ``loop_state`` as the last checkpoint."""
        step = int(state.step)
        if self.last.latest_step() == step:
            return
        self.last.save(step, args=self._save_args(state, loop_state))

    def save_best(self, state: TrainState, loop_state: dict) -> None:
        """Saves ``state`` as the best checkpoint (the caller judged it best)."""
        self.best.save(int(state.step), args=self._save_args(state, loop_state))

    def _restore(self, manager, target: TrainState) -> tuple[TrainState, dict]:
        manager.wait_until_finished()
        step = manager.latest_step()
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), loop=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], restored["loop"]

    def latest_step(self) -> int | None:
        """The step of the last checkpoint, or None."""
        return self.last.latest_step()

    def best_step(self) -> int | None:
        """The step of the best checkpoint, or None."""
        return self.best.latest_step()

    def restore_last(self, target: TrainState) -> tuple[TrainState, dict]:
        """The last state (shaped and sharded like ``target``) and loop state."""
        return self._restore(self.last, target)

    def restore_best(self, target: TrainState) -> tuple[TrainState, dict]:
        """The best state (shaped and sharded like ``target``) and loop state."""
        return self._restore(self.best, target)

    def write_json(self, name: str, content: dict) -> pathlib.Path:
        """Writes ``content`` as ``<directory>/<name>`` and returns the path."""
        path = self.directory / name
        path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
        return path

    def close(self) -> None:
        """Waits for pending saves and releases the managers."""
        for manager in (self.last, self.best):
            manager.wait_until_finished()
            manager.close()
