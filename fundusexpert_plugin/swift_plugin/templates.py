"""Cognitive-chain chat templates for ms-swift: ``fundusexpert_qwen2_5_vl``, ``fundusexpert_internvl``
(HF-native InternVL) and ``fundusexpert_internvl2_5`` (remote-code InternVL2.5, the paper's base).

Both carry the FundusExpert system prompt (English by default, see :mod:`.system_prompt`) and keep
the cognitive chain as plain assistant text. Boxes arrive as ms-swift ``objects`` in original-image
pixels and each family renders its own convention:

* ``fundusexpert_qwen2_5_vl`` (Qwen2.5-VL): ``<|object_ref_start|>label<|object_ref_end|>``
  ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` in absolute pixels of the image **after** the
  Qwen2.5-VL resize (ms-swift ``norm_bbox='none'``: ``round(v * resized / original)``).
* ``fundusexpert_internvl`` (HF-native InternVL, ``internvl_hf`` family): the paper's
  ``<ref>label</ref><box>[[x1, y1, x2, y2], ...]</box>`` with integers on the 0-999 grid of the whole
  image, ``int(v / W * 1000)`` clipped to 999 (:func:`geometry.to_grid999`; ms-swift's own
  ``norm1000`` rounds and can give 1000). Consecutive boxes of one reference are merged into one
  ``<box>`` tag, as in the paper's examples.
* ``fundusexpert_internvl2_5`` (remote-code InternVL2.5 / ``internvl_chat`` checkpoints such as
  OpenGVLab/InternVL2_5-8B): the same text and grid as ``fundusexpert_internvl`` on swift's
  ``internvl2_5`` template (tiles from ``MAX_NUM`` / ``INPUT_SIZE``).
"""
from __future__ import annotations

import logging
import re
from typing import List, Tuple

from swift.template import register_template
from swift.template.templates.internvl import Internvl2Template, InternvlhfTemplate
from swift.template.templates.qwen import Qwen2_5VLTemplate, QwenTemplateMeta
from swift.template.templates.utils import ChatmlTemplateMeta

from fundusexpert_plugin.core.geometry import to_grid999
from fundusexpert_plugin.swift_plugin.system_prompt import DEFAULT_SYSTEM

QWEN_TEMPLATE = 'fundusexpert_qwen2_5_vl'
INTERNVL_TEMPLATE = 'fundusexpert_internvl'
INTERNVL2_5_TEMPLATE = 'fundusexpert_internvl2_5'
logger = logging.getLogger(__name__)
_BOX = re.compile(r'^<box>\[(\[[^\]]*\](?:, \[[^\]]*\])*)\]</box>$')


class FamilyCheckMixin:
    """Refuse a model of another family as soon as the template meets its processor (ms-swift builds
    the template right after loading the model), instead of failing deep in the first encode, and warn
    about ``--max_pixels`` on Qwen (see :meth:`init_processor`)."""

    #: substring a model's ``model_type`` must contain, and the name of the template
    family = ''
    template_name = ''

    def init_processor(self, processor) -> None:
        """ms-swift's hook, plus the family check.

        Raises:
            ValueError: the model's ``model_type`` is not of the template's family (names both and the
                template to use instead).
        """
        super().init_processor(processor)
        model_type = str(getattr(getattr(self, 'model_info', None), 'model_type', '') or '')
        if model_type and self.family not in model_type:
            other = INTERNVL_TEMPLATE if 'internvl' in model_type else QWEN_TEMPLATE if 'qwen2_5_vl' in model_type else None
            raise ValueError(f'--template {self.template_name} needs a {self.family} model; the model is '
                             f'{model_type!r}' + (f': use --template {other}' if other else ''))


class FundusQwen2_5VLTemplate(FamilyCheckMixin, Qwen2_5VLTemplate):
    """Qwen2.5-VL template with the FundusExpert system prompt (boxes in resized-image pixels).

    Boxes are written in the pixels of the image as Qwen's processor resizes it under ``MAX_PIXELS``
    (:func:`fundusexpert_plugin.eval.parse.qwen_resized_size`). ms-swift's ``--max_pixels`` rescales the
    image *before* that resize, so the boxes land in a space the evaluation cannot rebuild from the
    original size: a warning says so; set the budget with ``MAX_PIXELS`` only.
    """

    family, template_name = 'qwen2_5_vl', QWEN_TEMPLATE

    def init_processor(self, processor) -> None:
        """The family check, and a warning when ``max_pixels`` (``--max_pixels``) is set."""
        super().init_processor(processor)
        if self.max_pixels is not None:
            logger.warning('%s: --max_pixels %s rescales each image before Qwen\'s own resize, so the boxes are '
                           'written in a space `fundusexpert eval score` and the rewards cannot rebuild; set the '
                           'image budget with the MAX_PIXELS environment variable instead', QWEN_TEMPLATE,
                           self.max_pixels)


class Grid999Mixin:
    """Boxes on the paper's 0-999 grid, consecutive boxes of one reference merged into one tag.

    For the InternVL templates, whose ``replace_bbox`` writes ``<box>[[x1, y1, x2, y2]]</box>``.
    """

    def normalize_bbox(self, inputs) -> None:
        """Original-image pixels (or 0-1 for ``bbox_type='norm1'``) -> 0-999 grid, in place."""
        objects = inputs.objects
        bbox_type = objects.pop('bbox_type', None) or 'real'
        image_ids = objects.pop('image_id', None) or []
        image_ids += [0] * (len(objects['bbox']) - len(image_ids))
        for bbox, image_id in zip(objects['bbox'], image_ids):
            if bbox_type == 'norm1':
                width = height = 1
            else:
                width, height = objects['width'][image_id], objects['height'][image_id]
            for i in range(0, len(bbox), 2):
                bbox[i] = to_grid999(bbox[i], width)
                bbox[i + 1] = to_grid999(bbox[i + 1], height)

    def _pre_tokenize(self, context_list, loss_scale_list, inputs) -> Tuple[List, List[float]]:
        res, res_loss_scale = super()._pre_tokenize(context_list, loss_scale_list, inputs)
        return merge_adjacent_boxes(res, res_loss_scale)


class FundusInternVLTemplate(FamilyCheckMixin, Grid999Mixin, InternvlhfTemplate):
    """HF-native InternVL (``InternVLForConditionalGeneration``) writing boxes on the paper's 0-999 grid."""

    family, template_name = 'internvl', INTERNVL_TEMPLATE


class FundusInternVL2_5Template(FamilyCheckMixin, Grid999Mixin, Internvl2Template):
    """Remote-code InternVL2.5 (``internvl_chat``, the paper's base model) on the paper's 0-999 grid.

    Tiling as swift's ``internvl2_5`` template: environment ``MAX_NUM`` (tiles, paper 6) and
    ``INPUT_SIZE`` (paper 448). ``encode`` needs only the tokenizer: it renders the chat text,
    splits the image into InternVL dynamic-preprocess tiles plus a thumbnail (``pixel_values``,
    ``[tiles, 3, INPUT_SIZE, INPUT_SIZE]``) and writes ``(INPUT_SIZE // 14)**2 / 4`` (256 at 448 px)
    ``<IMG_CONTEXT>`` tokens per tile; ``tests/swift_plugin/test_internvl2_5_encode.py`` checks it
    with a local tokenizer and no weights. What needs the real model is ``_post_encode`` (training
    and inference forward): it embeds ``input_ids`` with ``model.get_input_embeddings()`` and
    replaces the ``<IMG_CONTEXT>`` positions with ``model.extract_feature(pixel_values)`` (the
    InternViT + MLP projector), so the number of those tokens must equal the vision features,
    which only the checkpoint can confirm.
    """

    family, template_name = 'internvl', INTERNVL2_5_TEMPLATE


def merge_adjacent_boxes(contexts: List, loss_scales: List[float]) -> Tuple[List, List[float]]:
    """Merge runs of ``<box>[[..]]</box>`` contexts with equal loss scale into one
    ``<box>[[..], [..]]</box>`` (the paper's multi-box form). Other contexts are untouched."""
    out, out_scale = [], []
    for ctx, scale in zip(contexts, loss_scales):
        m = _BOX.match(ctx) if isinstance(ctx, str) else None
        prev = _BOX.match(out[-1]) if out and isinstance(out[-1], str) else None
        if m and prev and out_scale[-1] == scale:
            out[-1] = f'<box>[{prev.group(1)}, {m.group(1)}]</box>'
            continue
        out.append(ctx)
        out_scale.append(scale)
    return out, out_scale


def register(exist_ok: bool = False) -> None:
    """Register both templates with ms-swift.

    Raises:
        ValueError: a name is already registered and ``exist_ok`` is False (ms-swift's rule).
    """
    register_template(QwenTemplateMeta(QWEN_TEMPLATE, default_system=DEFAULT_SYSTEM,
                                       template_cls=FundusQwen2_5VLTemplate), exist_ok=exist_ok)
    register_template(ChatmlTemplateMeta(INTERNVL_TEMPLATE, default_system=DEFAULT_SYSTEM,
                                         template_cls=FundusInternVLTemplate), exist_ok=exist_ok)
    register_template(ChatmlTemplateMeta(INTERNVL2_5_TEMPLATE, default_system=DEFAULT_SYSTEM,
                                         template_cls=FundusInternVL2_5Template), exist_ok=exist_ok)
