"""One engine spec: the options of a Fundus-Engine run -> a :class:`.pipeline.FundusEngine`, written once.

:class:`EngineSpec` holds only paths, numbers and strings, so it pickles cheaply: the local runner
(:func:`.batch.run_engine`) calls :meth:`EngineSpec.build` once, and the Ray runner
(:func:`.ray_runner.run_engine_ray`) ships the spec to every actor, where calling it builds the engine
(the detector weights are loaded there, never pickled). ``fundusexpert engine run`` and
``fundusexpert engine ray`` turn the same command-line options into one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from fundusexpert_plugin.core import vocab

DESCRIBERS = ('rule', 'openai')


@dataclass(frozen=True)
class EngineSpec:
    """Everything needed to build the MMDetection-backed Fundus-Engine.

    Attributes:
        config: mmdet config file (e.g. the one ``fundusexpert detector train`` dumped); ``None``
            (with ``checkpoint`` ``None``): no detector, the optic disc and fovea come from the
            training-free landmark locator and no lesion is reported.
        checkpoint: detector weights (slim checkpoint).
        device: ``'auto'`` (``cuda`` when torch sees a GPU, else ``cpu``; in a Ray actor that is the
            GPU share Ray gave it) or a torch device string (``'cpu'``, ``'cuda'``, ``'cuda:1'``).
        score_threshold: detections below this score are dropped (:class:`.detect.Detector`).
        tile_size, tile_overlap: tiled inference window in pixels (``None``: off) and its overlap
            fraction (:class:`.detect.Detector`).
        languages: languages the describer writes (subset of ``vocab.LANGUAGES``).
        claim_absent: report the detector's classes with no detection as absent (default off: a
            detector's miss is "not detected", never "absent").
        source_dataset, licence: the records' provenance.
        image_labels: optional table of image-level labels (:func:`.labels.read_image_labels`).
        describer: ``'rule'`` (the deterministic rule text), ``'openai'`` (an OpenAI-compatible MLLM
            endpoint, :class:`.expand.MLLMDescriber`) or ``None``: ``'openai'`` when both
            ``mllm_base_url`` and ``mllm_model`` are set, else ``'rule'``.
        mllm_base_url, mllm_model: the endpoint (e.g. ``http://127.0.0.1:8000/v1`` of ``swift deploy``)
            and its model name.
        max_image_pixels: decompression-bomb limit in pixels of the process that builds the engine
            (:func:`fundusexpert_plugin.core.images.set_max_pixels`, set by :meth:`build`, so in every
            Ray actor too); ``None``: Pillow's default (``images.DEFAULT_MAX_PIXELS``).

    Raises:
        ValueError: an unknown describer or language, ``describer='openai'`` without both endpoint
            options, a score threshold outside [0, 1], a tile size below 1 px, a tile overlap outside
            [0, 1) or a pixel limit below 1 (at construction, before anything is loaded).
    """

    config: Optional[str] = None
    checkpoint: Optional[str] = None
    device: str = 'cpu'
    score_threshold: float = 0.3
    tile_size: Optional[int] = None
    tile_overlap: float = 0.2
    languages: Tuple[str, ...] = vocab.LANGUAGES
    claim_absent: bool = False
    source_dataset: str = 'unlabelled photographs'
    licence: str = "see the photographs' terms"
    image_labels: Optional[str] = None
    describer: Optional[str] = None
    mllm_base_url: Optional[str] = None
    mllm_model: Optional[str] = None
    max_image_pixels: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, 'languages', tuple(vocab.check_language(lang) for lang in self.languages))
        if self.describer not in (None, *DESCRIBERS):
            raise ValueError(f'describer {self.describer!r}: expected one of {DESCRIBERS}')
        if self.describer == 'openai' and not (self.mllm_base_url and self.mllm_model):
            raise ValueError('the openai describer needs both mllm_base_url and mllm_model '
                             '(--mllm-base-url, --mllm-model)')
        if (self.config is None) != (self.checkpoint is None):
            raise ValueError('give both the detector config and its checkpoint (--detector, --checkpoint), '
                             'or neither (the landmark locator alone)')
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f'score_threshold {self.score_threshold}: expected a value in [0, 1]')
        if self.tile_size is not None and self.tile_size < 1:
            raise ValueError(f'tile_size {self.tile_size}: expected a window of at least 1 pixel (or None: off)')
        if not 0.0 <= self.tile_overlap < 1.0:
            raise ValueError(f'tile_overlap {self.tile_overlap}: expected a fraction in [0, 1)')
        if self.max_image_pixels is not None and self.max_image_pixels < 1:
            raise ValueError(f'max_image_pixels {self.max_image_pixels}: expected at least 1 pixel (or None: default)')

    @property
    def describer_kind(self) -> str:
        """``'rule'`` or ``'openai'`` after the ``None`` default is resolved."""
        if self.describer is not None:
            return self.describer
        return 'openai' if self.mllm_base_url and self.mllm_model else 'rule'

    @property
    def detector_name(self) -> str:
        """The name recorded in each record's provenance: ``mmdet:<config file>@<checkpoint file>``
        (``'none'`` without a detector, as the engine records it). This exact identity stays in
        ``provenance.stages['localization']``; the chain's text names only the config stem
        (:func:`fundusexpert_plugin.render.chain.detector_display_name`), so training targets carry
        no file names."""
        if self.config is None:
            return 'none'
        return f'mmdet:{Path(self.config).name}@{Path(self.checkpoint).name}'

    def resolved_device(self) -> str:
        """``device`` with ``'auto'`` replaced by ``'cuda'`` or ``'cpu'`` (imports torch only then)."""
        if self.device != 'auto':
            return self.device
        import torch
        return 'cuda' if torch.cuda.is_available() else 'cpu'

    def build(self):
        """Set the process's pixel limit (``max_image_pixels``), load the detector and return the
        :class:`.pipeline.FundusEngine`.

        Raises:
            FileNotFoundError: the config, checkpoint or image-labels file is missing.
            FundusDataError: a bad image-labels table (:func:`.labels.read_image_labels`).
        """
        from fundusexpert_plugin.core.images import DEFAULT_MAX_PIXELS, set_max_pixels
        from fundusexpert_plugin.detector.detect import Detector
        from fundusexpert_plugin.engine.expand import MLLMDescriber, RuleDescriber, openai_chat
        from fundusexpert_plugin.engine.labels import read_image_labels
        from fundusexpert_plugin.engine.pipeline import FundusEngine
        set_max_pixels(self.max_image_pixels or DEFAULT_MAX_PIXELS)
        labels = read_image_labels(self.image_labels) if self.image_labels else None
        describer = RuleDescriber()
        if self.describer_kind == 'openai':
            describer = MLLMDescriber(openai_chat(self.mllm_base_url, self.mllm_model),
                                      name=f'openai:{self.mllm_model}')
        detector = None if self.config is None else Detector(
            self.config, self.checkpoint, device=self.resolved_device(), score_threshold=self.score_threshold,
            tile_size=self.tile_size, tile_overlap=self.tile_overlap)
        return FundusEngine(detector, describer=describer, languages=self.languages,
                            detector_name=self.detector_name, claim_absent=self.claim_absent,
                            source_dataset=self.source_dataset, licence=self.licence, image_labels=labels)

    def __call__(self):
        """Zero-argument engine factory (what :func:`.ray_runner.run_engine_ray` calls in each actor)."""
        return self.build()
