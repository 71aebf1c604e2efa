"""Configuration of cross-domain image mixing (stage two)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tufl.data.labels import MAX_CLASSES, class_names
from tufl.runtime.checks import MAX_CROP_SIDE, at_least, count_within, counts_within, within

MIX_MODES = ("single", "dual_soft")
# Upper bounds of the long-tail counts (each instance is fetched and pasted per sample).
MAX_LONGTAIL_INSTANCES = 64
MAX_FETCH_RETRIES = 1000


@dataclass(frozen=True)
class MixConfig:
    """Options of :class:`tufl.mixing.mixer.CrossDomainMixer`.

    ``p_longtail`` and ``longtail_k`` drive long-tail pasting in the ``single``
    mode; the ``dual_*`` options belong to the ``dual_soft`` mode, which pastes
    ``dual_longtail_count`` long-tail instances onto every template.
    ``max_fetch_retries`` and the relation options apply to both.
    """

    # "single": ClassMix source -> target; "dual_soft": a source template blended
    # into both the source and the target image.
    mode: Literal["single", "dual_soft"] = "single"
    # Weight of the mixed loss in the stage-two objective (applied by the trainer).
    lambda_mix: float = 0.5
    # Probability that a sample takes the long-tail branch (single mode).
    p_longtail: float = 0.3
    # Number of long-tail instances of such a sample: uniform over these values (1..64).
    longtail_k: tuple[int, ...] = (2, 3, 4)
    # Target pixels weigh the fraction of pseudo-labels at least this confident.
    confidence_threshold: float = 0.968
    # Half-width in pixels of the band along the mask boundary; 0 = no band.
    boundary_band: int = 0
    # Factor on the pixel weights inside the boundary band.
    boundary_weight: float = 2.0
    # Also paste the related classes of the classes ClassMix (and the dual_soft template)
    # selects (authors' `--class_relation`, which their scripts leave off; relations:
    # tufl.mixing.relations).
    class_relations: bool = False
    # Long-tail instances bring their related classes present in the same source crop
    # (rider with its bicycle, road with the vehicles on it; the authors always do).
    longtail_relations: bool = True
    # Relation table: by_name (authors' GTA5 table for 19 classes, SYNTHIA table for 16
    # and 13, by class name) or positional (for 13 classes their SYNTHIA table applied
    # by train id, as their Cross-City code does; the same as by_name for 19 and 16).
    relation_table: Literal["by_name", "positional"] = "by_name"
    # Heads the mixed loss is averaged over: main (authors) or all (main + auxiliary).
    loss_heads: Literal["main", "all"] = "main"
    # Extra fetch attempts for a long-tail instance whose class is not visible
    # in the loaded image (so 1 + max_fetch_retries attempts in all); 0..1000.
    max_fetch_retries: int = 3
    # Blending weight of the template in dual_soft mode (and of its label's loss).
    dual_alpha: float = 0.8
    # Long-tail classes whose instances dual_soft fetches from other source images and
    # pastes onto the template, by name; empty = the authors' list of the class set
    # (19: rider, bus, train, motorcycle, bicycle; 16: wall, fence, traffic light, bus;
    # 13: all 13 classes).
    dual_longtail_classes: tuple[str, ...] = ()
    # Long-tail instances pasted onto each dual_soft template (authors: 2, distinct classes).
    dual_longtail_count: int = 2
    # Apply the photometric transform T to the two dual_soft views (authors: no).
    dual_photometric: bool = False
    # Apply the photometric transform T to the single-mode mixed image (authors: yes).
    single_photometric: bool = True

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        found: list[str] = []
        if self.mode not in MIX_MODES:
            found.append(f"mode: must be one of {MIX_MODES}, got {self.mode!r}")
        found += counts_within("longtail_k", self.longtail_k, 1, MAX_LONGTAIL_INSTANCES)
        found += (at_least("lambda_mix", self.lambda_mix, 0.0)
                  + count_within("boundary_band", self.boundary_band, 0, MAX_CROP_SIDE, " (0 = off)")
                  + at_least("boundary_weight", self.boundary_weight, 0.0)
                  + count_within("max_fetch_retries", self.max_fetch_retries, 0, MAX_FETCH_RETRIES)
                  + count_within("dual_longtail_count", self.dual_longtail_count, 0, MAX_CLASSES))
        for name in ("p_longtail", "confidence_threshold", "dual_alpha"):
            found += within(name, getattr(self, name), 0, 1)
        known = class_names(19)
        unknown = [n for n in self.dual_longtail_classes if n not in known]
        if unknown:
            found.append(f"dual_longtail_classes: unknown class names {unknown}; known: {known}")
        if len(set(self.dual_longtail_classes)) != len(self.dual_longtail_classes):
            found.append(f"dual_longtail_classes: names repeat in {tuple(self.dual_longtail_classes)}")
        return found
