"""Frames already in memory replayed as a live stream: :class:`ArraySource` (tests, demos, checking a setup)."""

from __future__ import annotations

import numpy as np

from .frames import EndOfStream, Frames, Source

__all__ = ["ArraySource"]


class ArraySource(Source):
    """Replay a stack of frames, or any callable ``batch(start, n) -> Frames``, as a stream.

    Parameters
    ----------
    frames : array_like or callable
        (N, H, W) frames, or a function giving frames ``start`` … ``start + n − 1`` as :class:`Frames`
        (e.g. :meth:`xstructure.live.SimulatedRun.frames`).
    total : int or None
        Frames to send (required with a callable).
    batch : int
        Frames per message.
    delay, pumped, timetool : array_like or None
        Per-frame metadata for an array.
    """

    protocol = "memory"

    def __init__(self, frames, total: int | None = None, *, batch: int = 16, delay=None, pumped=None, timetool=None):
        super().__init__("memory")
        if callable(frames):
            if total is None:
                raise ValueError("give total, the number of frames to replay, with a callable")
            self._make = frames
        else:
            stack = np.asarray(frames)
            if stack.ndim != 3:
                raise ValueError(f"frames must be (N, H, W), got shape {stack.shape}")
            meta = {k: None if v is None else np.asarray(v) for k, v in
                    (("delay", delay), ("pumped", pumped), ("timetool", timetool))}
            total = stack.shape[0] if total is None else total

            def make(start, n):
                sl = slice(start, start + n)
                return Frames.make(np.arange(start, start + n), stack[sl],
                                   **{k: None if v is None else v[sl] for k, v in meta.items()})
            self._make = make
        self.total, self.batch, self._next = int(total), int(batch), 0

    def open(self) -> None:
        self._next = 0

    def receive(self, timeout: float) -> list:
        if self._next >= self.total:
            raise EndOfStream
        n = min(self.batch, self.total - self._next)
        out = self._make(self._next, n)
        self._next += n
        self.stats["messages"] += 1
        return [out]

    def close(self) -> None:
        pass
