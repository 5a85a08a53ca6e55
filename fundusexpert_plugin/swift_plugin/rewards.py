"""GRPO rewards for ``swift rlhf --rlhf_type grpo --reward_funcs ...``, registered in ms-swift's ``orms``.

=======================  =====================  ==========================================
``--reward_funcs``       class (log name)       formula (:mod:`fundusexpert_plugin.eval.rewards`)
=======================  =====================  ==========================================
``fundus_grounding``     ``FundusGrounding``    matched IoU / max(n_ref, n_pred); absent target
``fundus_format``        ``FundusFormat``       form x well-formed boxes x (refs boxed + tags closed) / 2
``fundus_consistency``   ``FundusConsistency``  clinical consistency Score/Total of a report
``fundus_mcq``           ``FundusMCQ``          strict first letter == answer letter
=======================  =====================  ==========================================

ms-swift logs each reward as ``rewards/<class name>/mean`` (and ``/std``), so the classes are named
for the log. Each call gets the completions and the batch's row columns as keyword arguments (one
list entry per completion, ``swift/rl_core/grpo_algorithm.py::compute_rewards_per_func``) and
returns one float in [0, 1] per completion, or ``None`` where the reward does not apply to the
row's task (NaN for ms-swift, left out of the sum).

Qwen boxes are in pixels of the image as the ``fundusexpert_qwen2_5_vl`` template resized it
(:func:`template_resized_size`). ``fundus_consistency`` uses the offline lexicon judge, or an
OpenAI-compatible endpoint when ``FUNDUS_REWARD_JUDGE_BASE_URL`` is set (model
``FUNDUS_REWARD_JUDGE_MODEL``, default ``gpt-4o``; key ``$OPENAI_API_KEY``), as ``fundusexpert eval
--judge openai``. Call :func:`register` from the plugin file; importing this module registers nothing.
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

from swift.rewards import ORM

from fundusexpert_plugin.core.lexicon_judge import LexiconJudge
from fundusexpert_plugin.eval import rewards
from fundusexpert_plugin.eval.parse import qwen_resized_size

#: ViT patch size of Qwen2/Qwen2.5-VL (``fetch_image``'s default ``image_patch_size``)
QWEN2_5_VL_PATCH_SIZE = 14


def template_resized_size(width: int, height: int, chat_template_kwargs: Optional[dict] = None) -> Tuple[int, int]:
    """Size ``(resized_width, resized_height)`` in pixels the Qwen2.5-VL template gives an image.

    The same computation as the template's ``replace_tag`` (``qwen_vl_utils.fetch_image`` on the
    row's ``chat_template_kwargs``), with the pixel budget ms-swift set in this process when it
    loaded the processor (``MAX_PIXELS``/``MIN_PIXELS`` -> ``IMAGE_MAX/MIN_TOKEN_NUM``,
    ``swift/model/models/qwen.py::patch_qwen_vl_utils``); when no processor was loaded yet, ms-swift's
    own patch is applied first. The template-level ``--max_pixels`` (a rescale before this step) is
    not visible to rewards: use ``MAX_PIXELS``.

    Args:
        width, height: original image size in pixels.
        chat_template_kwargs: the row's per-sample ``min_pixels`` / ``max_pixels`` /
            ``resized_width`` + ``resized_height``, if any.
    """
    from qwen_vl_utils import smart_resize, vision_process

    if not getattr(vision_process, '_patch', False):
        from swift.model.models.qwen import compat_qwen_vl_utils, patch_qwen_vl_utils
        compat_qwen_vl_utils(image_patch_size=QWEN2_5_VL_PATCH_SIZE)
        patch_qwen_vl_utils(vision_process)
    kwargs = chat_template_kwargs or {}
    factor = QWEN2_5_VL_PATCH_SIZE * vision_process.SPATIAL_MERGE_SIZE
    if 'resized_height' in kwargs and 'resized_width' in kwargs:
        resized_height, resized_width = smart_resize(kwargs['resized_height'], kwargs['resized_width'], factor=factor)
        return resized_width, resized_height
    return qwen_resized_size(width, height, factor=factor,
                             min_pixels=kwargs.get('min_pixels', vision_process.IMAGE_MIN_TOKEN_NUM * factor**2),
                             max_pixels=kwargs.get('max_pixels', vision_process.IMAGE_MAX_TOKEN_NUM * factor**2))


def consistency_judge():
    """The judge of ``fundus_consistency``: OpenAI-compatible when ``FUNDUS_REWARD_JUDGE_BASE_URL`` is set,
    else the offline lexicon judge."""
    base_url = os.environ.get('FUNDUS_REWARD_JUDGE_BASE_URL')
    if base_url:
        from fundusexpert_plugin.eval.llm_judge import OpenAIJudge
        return OpenAIJudge(base_url, os.environ.get('FUNDUS_REWARD_JUDGE_MODEL') or 'gpt-4o')
    return LexiconJudge()


class _FundusReward(ORM):
    """Shared call: one pure reward per row of the batch."""

    def __init__(self, args=None, **kwargs):
        super().__init__(args, **kwargs)
        self.lexicon = LexiconJudge()

    def score(self, completion: str, row: dict) -> Optional[float]:
        raise NotImplementedError

    def __call__(self, completions: List[str], **kwargs) -> List[Optional[float]]:
        return [self.score(c, row) for c, row in zip(completions, rewards.rows_from_batch(completions, kwargs))]

    @staticmethod
    def resized(row: dict):
        return lambda width, height: template_resized_size(width, height, row.get('chat_template_kwargs'))


class FundusGrounding(_FundusReward):
    """``fundus_grounding``: one-to-one matched IoU of the boxes (:func:`eval.rewards.grounding_reward`)."""

    def score(self, completion, row):
        return rewards.grounding_reward(completion, row, judge=self.lexicon, resized_size=self.resized(row))


class FundusFormat(_FundusReward):
    """``fundus_format``: the task's answer form (:func:`eval.rewards.format_reward`)."""

    def score(self, completion, row):
        return rewards.format_reward(completion, row, judge=self.lexicon, resized_size=self.resized(row))


class FundusConsistency(_FundusReward):
    """``fundus_consistency``: clinical consistency of a report (:func:`eval.rewards.consistency_reward`)."""

    def __init__(self, args=None, **kwargs):
        super().__init__(args, **kwargs)
        self.judge = consistency_judge()

    def score(self, completion, row):
        return rewards.consistency_reward(completion, row, judge=self.judge)


class FundusMCQ(_FundusReward):
    """``fundus_mcq``: strict first-letter MCQ accuracy (:func:`eval.rewards.mcq_reward`)."""

    def score(self, completion, row):
        return rewards.mcq_reward(completion, row)


REWARDS = {'fundus_grounding': FundusGrounding, 'fundus_format': FundusFormat,
           'fundus_consistency': FundusConsistency, 'fundus_mcq': FundusMCQ}


def register(exist_ok: bool = False) -> None:
    """Add the rewards to ms-swift's ``orms`` (``--reward_funcs fundus_grounding ...``).

    Raises:
        ValueError: a name is already registered and ``exist_ok`` is False.
    """
    from swift.rewards import orms

    from fundusexpert_plugin.swift_plugin.registry import add_to_map
    for name, cls in REWARDS.items():
        add_to_map(orms, name, cls, exist_ok=exist_ok, flag='--reward_funcs')
