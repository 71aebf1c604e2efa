"""How a network runs on images at test time: :class:`InferenceOptions`, and the ``eval``
config section built on it (:class:`EvalConfig`).

Evaluation, validation during training, prediction of files and videos all take one
:class:`InferenceOptions` (see :func:`tufl.evaluation.inference.predict_probs`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tufl.runtime.checks import MAX_BATCH_SIZE, MAX_IMAGE_SIDE, count_within, workers_problems

# The largest test scale (an image is resized by it before the network sees it).
MAX_SCALE = 16.0


@dataclass(frozen=True)
class InferenceOptions:
    """Test scales, horizontal flip, a sliding window and mixed precision."""

    # Test scales, each in (0, 16]; several = multi-scale inference (e.g. 0.5 ... 1.75).
    scales: tuple[float, ...] = (1.0,)
    # Average with the horizontally flipped input.
    flip: bool = False
    # Sliding-window size (height, width), sides 1..32768 pixels; null = whole image at once.
    window: tuple[int, int] | None = None
    # Sliding-window stride (height, width); null with a window = the window (no overlap).
    stride: tuple[int, int] | None = None
    # Mixed precision (autocast: bfloat16 where supported, else float16).
    amp: bool = False

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        out = []
        if len(self.scales) == 0 or not all(0 < s <= MAX_SCALE for s in self.scales):
            out.append(f"scales: must be a non-empty list of numbers in (0, {MAX_SCALE:g}], got {list(self.scales)}")
        window = self.window
        if window is not None and (len(window) != 2 or not all(1 <= w <= MAX_IMAGE_SIDE for w in window)):
            out.append(f"window: must be two sizes (height, width) in 1..{MAX_IMAGE_SIDE} pixels, got {self.window}")
        elif self.stride is not None:
            if self.window is None:
                out.append("stride: is only used with a sliding window: give window as well")
            elif len(self.stride) != 2 or min(self.stride) < 1 or any(s > w for s, w in zip(self.stride, self.window)):
                out.append(f"stride: must be two positive sizes no larger than the window {self.window}, "
                           f"got {self.stride}")
        return out

    @property
    def window_stride(self) -> tuple[int, int] | None:
        """The stride of the sliding window (the window itself when no stride is given)."""
        return self.stride or self.window

    def settings(self) -> dict[str, object]:
        """The options as plain values, as evaluation reports record them."""
        return {"scales": list(self.scales), "flip": self.flip,
                "window": list(self.window) if self.window else None,
                "stride": list(self.window_stride) if self.window else None, "amp": self.amp}


@dataclass(frozen=True)
class EvalConfig(InferenceOptions):
    """Inference settings for validation and `tufl evaluate`."""

    # Mixed precision (autocast: bfloat16 where supported, else float16).
    amp: bool = True
    # Evaluation images per forward pass (1..4096).
    batch_size: int = 1
    # Data-loading worker processes (0..4 per CPU).
    num_workers: int = 2
    # Leave unreadable validation samples out (each named, the count reported) instead of
    # stopping with an error naming the file; the mIoU is then over fewer images.
    skip_bad_files: bool = False

    def problems(self) -> list[str]:
        out = super().problems()
        if (self.window is None) != (self.stride is None):
            out.append("window: window and stride go together")
        out += count_within("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        return out + workers_problems("num_workers", self.num_workers)
