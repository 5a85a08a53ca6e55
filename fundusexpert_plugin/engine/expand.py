"""Semantic expansion: structured findings -> fine-grained feature text (step 4 of the chain).

Two backends behind one interface (:class:`Describer`):

* :class:`RuleDescriber` (default, offline, EN+ZH, deterministic): the chain's own rule-based
  feature sentences (:func:`.chain.feature_text`); it stores nothing in the record, since the
  builder writes the same text from the boxes.
* :class:`MLLMDescriber`: prompts a multimodal model with the image and the structured findings,
  through any OpenAI-compatible endpoint (``swift deploy``, vLLM, GPT-4o: :func:`openai_chat`).
  Every output passes
  :func:`consistency_problems` against the record; a failing output is logged, counted and
  replaced by the rule-based text (``describe`` returns ``None``).

Source: the paper's Stage D (MLLM-based semantic expansion) names neither the model nor the prompt;
the prompt and the consistency rules here are ours (the paper leaves MLLM-output filtering open).
"""
from __future__ import annotations

import base64
import functools
import json
import logging
import re
from typing import Callable, Dict, List, Optional

import numpy as np
from PIL import Image

from fundusexpert_plugin.core.images import encode_jpeg

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.geometry import box_px_to_grid
from fundusexpert_plugin.core.openai_client import chat_text, make_client
from fundusexpert_plugin.core.record import FundusGenRecord
from fundusexpert_plugin.render.chain import feature_text, frame_of
from fundusexpert_plugin.render.position import locate

logger = logging.getLogger(__name__)

ChatFn = Callable[[List[dict]], str]

PROMPTS = {
    'en': ('You are an ophthalmologist. Write 2-4 sentences describing the fine-grained features (morphology, '
           'colour, distribution, density, relation to the macula) of the findings listed below, as seen in this '
           'colour fundus photograph. Mention every listed finding. Do not state that any other lesion is present. '
           'When you refer to a location, write it as <ref>finding</ref><box>[[x1, y1, x2, y2]]</box> with integers '
           'on the 0-999 grid of the whole image.\nFindings (JSON):\n{findings}'),
    'zh': ('你是一名眼科医生。请用2-4句话描述下列病灶在这张彩色眼底照片中的细粒度特征（形态、颜色、分布、密度、与黄斑的关系）。'
           '必须提及每一个列出的病灶，不得声称存在其他病灶。提及位置时，用<ref>病灶</ref><box>[[x1, y1, x2, y2]]</box>表示，'
           '坐标为整幅图像0-999网格上的整数。\n病灶（JSON）：\n{findings}'),
}


class Describer:
    """Interface: ``describe(record, image_rgb, lang) -> Optional[str]``.

    ``None`` means "use the rule-based text at render time"; a string is stored in
    ``record.feature_text[lang]`` and used by the chain's step 4.
    """

    name = 'base'

    def describe(self, record: FundusGenRecord, image: Optional[Image.Image], lang: str) -> Optional[str]:
        raise NotImplementedError


class RuleDescriber(Describer):
    """The deterministic default: nothing to store, the chain renders its rule text."""

    name = 'rule'

    def describe(self, record, image, lang):
        return None


def findings_payload(record: FundusGenRecord, lang: str) -> List[dict]:
    """The structured findings given to the MLLM: name, boxes on the 0-999 grid (largest 5), quadrant,
    distance to the fovea in DD (when the disc is known), and known-absent classes."""
    frame = frame_of(record)
    items = []
    for label in record.present_labels():
        boxes = record.boxes(label)
        item = {'finding': vocab.finding_name(label, lang), 'count': len(boxes),
                'boxes_0_999': [list(box_px_to_grid(b, record.width, record.height)) for b in boxes[:5]]}
        if frame is not None and vocab.FINDINGS[label].kind == 'lesion':
            positions = [locate(b, frame, record.width) for b in boxes]
            item['quadrants'] = sorted({p.quadrant for p in positions})
            item['nearest_distance_to_fovea_dd'] = round(min(p.distance_to_fovea_dd for p in positions), 2)
        items.append(item)
    for label in record.absent_labels():
        items.append({'finding': vocab.finding_name(label, lang), 'count': 0, 'status': 'absent'})
    return items


_BOX_TAG = re.compile(r'<box>(.*?)</box>', re.S)
_GRID_BOX = re.compile(r'\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]')


@functools.lru_cache(maxsize=1)
def _lexicon_judge():
    """One offline judge per process (it compiles the lexicon once; the engine calls it per record)."""
    from fundusexpert_plugin.core.lexicon_judge import LexiconJudge
    return LexiconJudge()


def consistency_problems(text: str, record: FundusGenRecord, lang: str) -> List[str]:
    """Why an MLLM description disagrees with the record (empty list: consistent).

    Rules (ours): every lesion class present in the record is mentioned; no finding the record does
    not hold is asserted present (read with the offline lexicon judge, negation-aware); every
    ``<box>`` holds parsable ``[x1, y1, x2, y2]`` integers on 0-999 with ``x1 < x2`` and ``y1 < y2``.
    """
    problems = []
    if not text or not text.strip():
        return ['empty output']
    present = [f for f in record.present_labels() if vocab.FINDINGS[f].kind == 'lesion']
    others = [f for f in vocab.FINDINGS if vocab.FINDINGS[f].kind == 'lesion' and f not in present]
    status = _lexicon_judge().judge(text, present + others, lang)
    problems += [f'{f} not mentioned' for f in present if status[f] == 'not_mentioned']
    problems += [f'{f} asserted present but not in the record' for f in others if status[f] == 'present']
    for i, tag in enumerate(_BOX_TAG.findall(text)):
        boxes = _GRID_BOX.findall(tag)
        if not boxes:
            problems.append(f'box {i} does not parse: {tag[:40]!r}')
        for b in boxes:
            x1, y1, x2, y2 = (int(v) for v in b)
            if not (0 <= x1 < x2 <= 999 and 0 <= y1 < y2 <= 999):
                problems.append(f'box {i} {list(map(int, b))} is not a 0-999 xyxy box')
    return problems


class MLLMDescriber(Describer):
    """Feature text from a multimodal model, kept only when :func:`consistency_problems` is empty.

    Args:
        chat: ``chat(messages) -> str``; ``messages`` are OpenAI-style with the image as a data URL.
            Build one with :func:`openai_chat`.
        name: recorded in the run summary.

    Attributes:
        accepted, rejected: counts; ``rejections`` holds ``(record_id, lang, problems)``.
    """

    def __init__(self, chat: ChatFn, name: str = 'mllm') -> None:
        self.chat, self.name = chat, name
        self.accepted = self.rejected = 0
        self.rejections: List[tuple] = []

    def describe(self, record, image, lang):
        prompt = PROMPTS[lang].format(findings=json.dumps(findings_payload(record, lang), ensure_ascii=False))
        content: List[dict] = []
        if image is not None:
            jpeg = encode_jpeg(np.asarray(image.convert('RGB')), quality=90)  # fresh image, no metadata
            content.append({'type': 'image_url', 'image_url': {
                'url': 'data:image/jpeg;base64,' + base64.b64encode(jpeg).decode()}})
        content.append({'type': 'text', 'text': prompt})
        try:
            text = self.chat([{'role': 'user', 'content': content}])
        except Exception as exc:  # endpoint down, timeout: fall back, never stop the run
            problems = [f'{type(exc).__name__}: {exc}']
            text = None
        else:
            problems = consistency_problems(text, record, lang)
        if problems:
            self.rejected += 1
            self.rejections.append((record.record_id, lang, problems))
            logger.warning('expansion of %s (%s) rejected, rule text used: %s', record.record_id, lang,
                           '; '.join(problems))
            return None
        self.accepted += 1
        return text.strip()


def openai_chat(base_url: str, model: str, api_key: Optional[str] = None, *, timeout: float = 60.0,
                max_retries: int = 2, temperature: float = 0.0) -> ChatFn:
    """A chat function over an OpenAI-compatible endpoint (e.g. ``swift deploy`` on port 8000).

    Arguments as :func:`fundusexpert_plugin.core.openai_client.make_client`; ``temperature`` per call.
    """
    client = make_client(base_url, api_key, timeout=timeout, max_retries=max_retries)

    def chat(messages: List[dict]) -> str:
        return chat_text(client, model, messages, temperature=temperature)
    return chat


def expand_record(record: FundusGenRecord, describer: Describer, image: Optional[Image.Image],
                  languages=vocab.LANGUAGES) -> FundusGenRecord:
    """Return the record with ``feature_text`` filled for each language the describer answered."""
    texts: Dict[str, str] = dict(record.feature_text)
    for lang in languages:
        text = describer.describe(record, image, lang)
        if text is not None:
            texts[lang] = text
    return record.model_copy(update={'feature_text': texts})


__all__ = ['Describer', 'RuleDescriber', 'MLLMDescriber', 'consistency_problems', 'findings_payload',
           'openai_chat', 'expand_record', 'feature_text']
