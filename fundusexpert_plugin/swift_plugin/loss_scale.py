"""``--loss_scale fundus_grounding``: up-weight box and reference spans in the assistant text.

ms-swift calls :meth:`FundusGroundingLossScale.get_loss_scale` on each assistant segment **before**
the grounding placeholders are rendered (``swift/template/base.py``: ``Template._swift_encode`` ->
``LossScale.__call__``, then ``_pre_tokenize`` -> ``replace_ref`` / ``replace_bbox``). The segment
is split into pieces and each piece gets one weight; every token a piece renders to inherits it:

=========================================================  ==========  =====================
piece                                                      kind        weight (default)
=========================================================  ==========  =====================
``<bbox>`` placeholder (rendered by the template)          box         ``box`` (2.0)
``<|box_start|>...<|box_end|>`` literal (Qwen)             box         ``box``
``<box>...</box>`` literal (InternVL)                      box         ``box``
``<ref-object>`` placeholder                               ref         ``ref`` (1.5)
``<|object_ref_start|>...<|object_ref_end|>`` (Qwen)       ref         ``ref``
``<ref>...</ref>`` literal (InternVL)                      ref         ``ref``
any other text                                             text        1.0
=========================================================  ==========  =====================

A weight applies to the whole rendered span, delimiters included. Consecutive ``<bbox>`` pieces
get the same weight, so ``fundusexpert_internvl`` still merges them into one ``<box>[[..], [..]]``
tag (:func:`templates.merge_adjacent_boxes` only merges equal weights). Prompt tokens keep weight 0
(``base_strategy``: ``default`` / ``last_round`` / ``all``, as ms-swift's own loss scales), and a
message's own ``loss`` / ``loss_scale`` field overrides this class (ms-swift's rule). Plain-list
boxes without delimiters (``QWENVL_BBOX_FORMAT=new``) are not recognised and keep weight 1.0.

Configuration, checked when the plugin registers (:func:`register`) and read when the template is built:

1. ``loss_scale_config/fundus_grounding.json`` next to this file: ``{"box": 2.0, "ref": 1.5}``;
2. ``FUNDUS_GROUNDING_LOSS_SCALE_CONFIG=/path/to.json``: a JSON object that replaces keys of 1;
3. ``FUNDUS_GROUNDING_BOX_SCALE`` / ``FUNDUS_GROUNDING_REF_SCALE``: one float each, override 1-2.

Weights are finite and >= 0; 0 removes the span from the loss (ms-swift then sets its labels to
-100). Weights other than 0/1 need ms-swift's non-binary path, so ``is_binary = False`` and the
template emits a ``loss_scale`` tensor (no ``--is_binary_loss_scale`` flag needed).

Source: ours (not in the paper; FundusExpert trains boxes as plain text with unweighted CE).
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from swift.loss_scale import LossScale

LOSS_SCALE_NAME = 'fundus_grounding'
DEFAULT_CONFIG = Path(__file__).resolve().parent / 'loss_scale_config' / 'fundus_grounding.json'
CONFIG_ENV = 'FUNDUS_GROUNDING_LOSS_SCALE_CONFIG'
WEIGHT_ENVS = {'box': 'FUNDUS_GROUNDING_BOX_SCALE', 'ref': 'FUNDUS_GROUNDING_REF_SCALE'}

# One alternative per piece kind; the first group that matches names the kind. Non-greedy, one line.
_PIECE = re.compile(
    r'(?P<box><bbox>|<\|box_start\|>.*?<\|box_end\|>|<box>.*?</box>)'
    r'|(?P<ref><ref-object>|<\|object_ref_start\|>.*?<\|object_ref_end\|>|<ref>.*?</ref>)')


def _check_weight(value, where: str) -> float:
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise ValueError(f'{where} = {value!r}: expected a number >= 0') from None
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f'{where} = {value!r}: expected a finite number >= 0')
    return weight


def load_weights(environ: Optional[Dict[str, str]] = None) -> Dict[str, float]:
    """The ``{'box': w, 'ref': w}`` weights: shipped JSON, then the JSON named by the env, then env floats.

    Args:
        environ: mapping to read the variables from; ``os.environ`` when None.

    Returns:
        ``{'box': float, 'ref': float}``, each finite and >= 0.

    Raises:
        FileNotFoundError: ``FUNDUS_GROUNDING_LOSS_SCALE_CONFIG`` names a file that does not exist.
        ValueError: a file that is not JSON or not a JSON object, an unknown key, or a weight that is not a finite
            number >= 0 (the message names the file or variable and the value).
    """
    environ = os.environ if environ is None else environ
    sources = [('shipped loss scale config', DEFAULT_CONFIG)]
    if environ.get(CONFIG_ENV, '').strip():
        sources.append((CONFIG_ENV, Path(environ[CONFIG_ENV])))
    weights: Dict[str, float] = {}
    for source, path in sources:
        if not path.is_file():
            raise FileNotFoundError(f'{source}: no such file {str(path)!r}')
        try:
            data = json.loads(path.read_text(encoding='utf-8'))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f'{source} {path}: not valid JSON ({exc})') from None
        if not isinstance(data, dict):
            raise ValueError(f'{path}: expected a JSON object like {{"box": 2.0, "ref": 1.5}}, '
                             f'got {type(data).__name__}')
        unknown = sorted(set(data) - set(WEIGHT_ENVS))
        if unknown:
            raise ValueError(f'{path}: unknown key(s) {unknown}; known keys: {sorted(WEIGHT_ENVS)}')
        weights.update({k: _check_weight(v, f'{path}: {k}') for k, v in data.items()})
    for kind, env in WEIGHT_ENVS.items():
        if environ.get(env, '').strip():
            weights[kind] = _check_weight(environ[env], env)
    missing = sorted(set(WEIGHT_ENVS) - set(weights))
    if missing:
        raise ValueError(f'{DEFAULT_CONFIG}: no weight for {missing}; expected keys {sorted(WEIGHT_ENVS)}')
    return weights


def split_grounding(text: str) -> List[Tuple[str, str]]:
    """Split assistant text into ``(piece, kind)`` with kind ``'box'``, ``'ref'`` or ``'text'``.

    Args:
        text: one assistant segment, placeholders not yet rendered.

    Returns:
        Pieces in order; ``''.join(pieces) == text``. Empty pieces are dropped.

    Examples:
        >>> split_grounding('The disc <ref-object><bbox>.')
        [('The disc ', 'text'), ('<ref-object>', 'ref'), ('<bbox>', 'box'), ('.', 'text')]
    """
    pieces, start = [], 0
    for m in _PIECE.finditer(text):
        if m.start() > start:
            pieces.append((text[start:m.start()], 'text'))
        pieces.append((m.group(0), m.lastgroup))
        start = m.end()
    if start < len(text):
        pieces.append((text[start:], 'text'))
    return pieces


class FundusGroundingLossScale(LossScale):
    """Per-token weights: box spans ``box``, reference spans ``ref``, other assistant text 1.0.

    See the module docstring for the recognised pieces and the configuration.

    Args:
        base_strategy: ms-swift's ``'default'`` (assistant turns), ``'last_round'`` or ``'all'``.

    Raises:
        ValueError, FileNotFoundError: from :func:`load_weights` (bad weight or config file).
    """
    is_binary = False

    def __init__(self, base_strategy: str = 'default'):
        super().__init__(base_strategy)
        self.weights = load_weights()

    def get_loss_scale(self, context, *, query: Optional[str] = None, **kwargs) -> Tuple[List, List[float]]:
        """Split ``context`` and weight each piece.

        Args:
            context: an assistant segment (``str``); token-id contexts get weight 1.0 unchanged.
            query: the user turn of this round (unused).

        Returns:
            ``(pieces, weights)``, one weight per piece.
        """
        if not isinstance(context, str):
            return super().get_loss_scale(context)
        pieces = split_grounding(context)
        if not pieces:
            return [context], [1.0]
        weights = {'text': 1.0, **self.weights}
        return [p for p, _ in pieces], [weights[kind] for _, kind in pieces]


def register(exist_ok: bool = False) -> None:
    """Add ``fundus_grounding`` to ms-swift's ``loss_scale_map`` (``--loss_scale fundus_grounding``).

    The weights are loaded once here, so a bad ``FUNDUS_GROUNDING_*`` value or config file stops swift
    when the plugin is loaded, with its own message, instead of failing every row inside ms-swift's
    encode retries (which end in a misleading "Failed to retrieve the dataset").

    Raises:
        ValueError: the name is already registered and ``exist_ok`` is False; a bad weight or config
            file (:func:`load_weights`).
        FileNotFoundError: the config file of ``FUNDUS_GROUNDING_LOSS_SCALE_CONFIG`` is missing.
    """
    from swift.loss_scale import loss_scale_map
    load_weights()

    from fundusexpert_plugin.swift_plugin.registry import add_to_map
    add_to_map(loss_scale_map, LOSS_SCALE_NAME, FundusGroundingLossScale, exist_ok=exist_ok, flag='--loss_scale')
