"""``--loss_type fundus_grounding``: token cross-entropy plus a distance-aware term on box coordinates.

Token CE treats a coordinate digit that is off by one like one that is off by nine, and the few box
tokens of a sample are averaged with hundreds of report tokens. This loss adds, for every digit of
a box coordinate, the expected distance between the predicted digit and the target digit, weighted
by the digit's place value, so that near misses cost less than far ones.

Formula (per micro-batch; ``t`` runs over shifted target positions with a label)::

    loss = ( sum_t s_t * CE_t  +  lambda * sum_{t in D} (10 ** p_t / U) * sum_{k=0..9} q_t(k) * |k - d_t| ) / N

* ``CE_t``: token cross-entropy of the target at ``t``; ``s_t`` its ms-swift ``loss_scale`` (1.0
  without ``--loss_scale``; e.g. ``--loss_scale fundus_grounding`` raises it on box spans). When
  ms-swift already computed the weighted per-token CE (``outputs.loss``, it does so whenever a
  ``loss_scale`` exists or ``--enable_dft_loss`` is on) that vector is used as is.
* ``D``: coordinate digits. A target token is a coordinate digit when it is one of the ten digit
  tokens ``'0'..'9'`` and lies inside a box span, i.e. after a box-open token (``<|box_start|>``
  or ``<box>``) and before the next box-close token (``<|box_end|>`` / ``</box>``) or ignored
  label. A maximal run of consecutive coordinate digits is one coordinate number (``(39,57)``
  gives 39 and 57; ``[[155, 336, ...]]`` gives 155, 336, ...). Runs longer than
  :data:`MAX_DIGITS` are not coordinates and get CE only.
* ``d_t``: the target digit (0-9); ``p_t``: its place in its number (0 = units, 1 = tens, ...),
  taken from the target's digit count (teacher forcing: the model saw the true preceding digits).
* ``q_t``: the predicted distribution renormalised over the ten digit tokens,
  ``softmax(logits_t[digit_ids])``. ``sum_k q_t(k) |k - d_t|`` is the 1-Wasserstein distance
  between ``q_t`` and the one-hot target on the ordered digits 0..9, in digit units.
* ``U`` (``coord_unit``, default 100): the coordinate distance that costs 1 per unit of expected
  digit error; coordinates are in the template's text units (0-999 grid for
  ``fundusexpert_internvl``, resized-image pixels for ``fundusexpert_qwen2_5_vl``). ``lambda``
  (``number_weight``, default 1.0) weights the term against CE.
* ``N``: ``num_items_in_batch`` from the trainer (labelled tokens over all gradient-accumulation
  micro-batches), else the labelled tokens of this micro-batch. Both terms share it, so summing
  the micro-batch losses gives the full-batch loss exactly (the trainer does not rescale a
  ``compute_loss_func`` loss for gradient accumulation).

For one number the term is ``sum_j 10**p_j E|D_j - d_j| / U``, an upper bound of the expected
absolute error ``E|N - n|`` of the number in coordinate units (divided by ``U``); it is 0 only when
all digit mass is on the target digits. With ``U = 100`` a hundreds digit spread uniformly over
0-9 (target 3) costs ``lambda * 1 * 2.7`` while a units digit one off costs ``lambda * 0.01``.
Carries are not modelled: predicting 349 for 350 (tens 4 for 5, units 9 for 0) costs
``(10 + 9) / U``, not ``1 / U``. Without boxes in the batch the loss equals ms-swift's
``cross_entropy`` loss.

Source: the digit term is the Wasserstein variant of the Number Token Loss (NTL-WAS; Zausinger et
al., "Regress, Don't Guess", ICML 2025, arXiv 2411.02083), applied per digit, weighted by place value
(ours), restricted to box coordinates (ours). Defaults ``lambda = 1``, ``U = 100`` are ours (not
tuned, not in the FundusExpert paper, which trains with plain CE).

Logged metrics (``trainer.custom_metrics``, averaged over the logging interval; absent when the
interval had no box): ``box_loss`` (mean unweighted CE per token of the box spans, delimiters
included, nats) and ``coord_err`` (mean per coordinate of ``|E[N] - n|``, the teacher-forced
expected value ``E[N] = sum_j 10**p_j E[D_j]`` against the target, in coordinate units).

Configuration: environment variables ``FUNDUS_GROUNDING_NUMBER_WEIGHT`` (lambda) and
``FUNDUS_GROUNDING_COORD_UNIT`` (U), read when the trainer builds the loss.
"""
from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from swift.loss import BaseLoss

logger = logging.getLogger(__name__)

LOSS_NAME = 'fundus_grounding'
IGNORE_INDEX = -100
#: (open, close) token pairs of the box spans this loss looks for (Qwen2.5-VL; InternVL)
BOX_DELIMITERS: Tuple[Tuple[str, str], ...] = (('<|box_start|>', '<|box_end|>'), ('<box>', '</box>'))
#: longer digit runs inside a box are not coordinates (Qwen2.5-VL pixels have at most 5 digits)
MAX_DIGITS = 5
DEFAULT_NUMBER_WEIGHT = 1.0
DEFAULT_COORD_UNIT = 100.0
NUMBER_WEIGHT_ENV = 'FUNDUS_GROUNDING_NUMBER_WEIGHT'
COORD_UNIT_ENV = 'FUNDUS_GROUNDING_COORD_UNIT'


@dataclass(frozen=True)
class GroundingTokenIds:
    """Token ids the loss reads from the labels.

    Attributes:
        open_ids: ids that open a box span (``<|box_start|>``, ``<box>`` where present).
        close_ids: ids that close one, same order.
        digit_ids: ids of ``'0'`` .. ``'9'``, in digit order (10 ids).
    """

    open_ids: Tuple[int, ...]
    close_ids: Tuple[int, ...]
    digit_ids: Tuple[int, ...]


def grounding_token_ids(tokenizer) -> GroundingTokenIds:
    """Box-delimiter and digit token ids of a tokenizer.

    A delimiter pair is used when both tokens exist and each encodes to exactly its own id.

    Args:
        tokenizer: a Hugging Face tokenizer (``trainer.template.tokenizer``).

    Returns:
        The ids; ``open_ids``/``close_ids`` hold every pair found (the tiny and real InternVL
        tokenizers have both the Qwen and the InternVL pair).

    Raises:
        ValueError: no box-delimiter pair in the vocabulary, or a digit that is not one token.
    """
    def single_id(text: str) -> Optional[int]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        return ids[0] if len(ids) == 1 else None

    opens, closes = [], []
    for open_tok, close_tok in BOX_DELIMITERS:
        open_id, close_id = single_id(open_tok), single_id(close_tok)
        if open_id is not None and close_id is not None:
            opens.append(open_id)
            closes.append(close_id)
    if not opens:
        raise ValueError(f'{type(tokenizer).__name__}: none of the box delimiter pairs {list(BOX_DELIMITERS)} '
                         f'is a pair of single tokens; the {LOSS_NAME} loss needs one to find coordinates')
    digits = []
    for d in '0123456789':
        ids = tokenizer.encode(d, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f'{type(tokenizer).__name__}: digit {d!r} encodes to {ids}; the {LOSS_NAME} loss '
                             'needs every digit to be a single token')
        digits.append(ids[0])
    return GroundingTokenIds(tuple(opens), tuple(closes), tuple(digits))


@dataclass
class CoordinateDigits:
    """Where the box spans and coordinate digits are in a batch of shifted labels.

    Attributes:
        box_mask (torch.BoolTensor[B, T]): target inside a box span, delimiters included.
        digit_mask (torch.BoolTensor[B, T]): target is a coordinate digit (set ``D``).
        digit_value (torch.LongTensor[B, T]): the digit 0-9 at ``digit_mask``, -1 elsewhere.
        place (torch.LongTensor[B, T]): place value exponent at ``digit_mask`` (0 = units), -1 elsewhere.
        number_index (torch.LongTensor[B, T]): 0-based id of the coordinate number (row-major
            order) at ``digit_mask``, -1 elsewhere.
        num_numbers (int): count of coordinate numbers.
        num_long_runs (int): digit runs inside boxes left out for having more than ``MAX_DIGITS`` digits.
    """

    box_mask: torch.Tensor
    digit_mask: torch.Tensor
    digit_value: torch.Tensor
    place: torch.Tensor
    number_index: torch.Tensor
    num_numbers: int
    num_long_runs: int


def _run_length_to_end(mask: torch.Tensor) -> torch.Tensor:
    """For each True in ``mask`` [B, T], how many Trues follow in its run, itself included; 0 on False."""
    rev = mask.flip(-1).long()
    csum = rev.cumsum(-1)
    base = torch.where(rev == 0, csum, torch.zeros_like(csum)).cummax(-1).values
    return ((csum - base) * rev).flip(-1)


def find_coordinate_digits(shift_labels: torch.Tensor, token_ids: GroundingTokenIds,
                           max_digits: int = MAX_DIGITS) -> CoordinateDigits:
    """Locate box spans and coordinate numbers in shifted labels (see the module docstring).

    Args:
        shift_labels (torch.LongTensor[B, T]): targets already shifted (position t holds the token
            predicted from position t), ``-100`` where there is no loss. An ignored label ends a span.
        token_ids: from :func:`grounding_token_ids`.
        max_digits: longest digit run counted as a coordinate.

    Returns:
        A :class:`CoordinateDigits` on the labels' device.
    """
    lab = shift_labels
    device = lab.device
    pos = torch.arange(lab.shape[-1], device=device).expand_as(lab)
    open_ids = torch.tensor(token_ids.open_ids, device=device)
    close_ids = torch.tensor(token_ids.close_ids, device=device)
    digit_ids = torch.tensor(token_ids.digit_ids, device=device)
    is_open = torch.isin(lab, open_ids)
    is_close = torch.isin(lab, close_ids)
    ends = is_close | (lab == IGNORE_INDEX)
    none = torch.full_like(pos, -1)
    last_open = torch.where(is_open, pos, none).cummax(-1).values
    last_end = torch.where(ends, pos, none).cummax(-1).values
    inside = last_open > last_end                       # from the open token up to before the close
    inside_before = F.pad(inside[..., :-1], (1, 0), value=False)
    box_mask = inside | (is_close & inside_before)

    is_digit = torch.isin(lab, digit_ids) & inside
    to_end = _run_length_to_end(is_digit)
    from_start = _run_length_to_end(is_digit.flip(-1)).flip(-1)
    run_len = to_end + from_start - 1
    first = is_digit & (from_start == 1)
    num_long_runs = int((first & (run_len > max_digits)).sum())
    digit_mask = is_digit & (run_len <= max_digits)
    starts = (first & digit_mask).reshape(-1)
    number_index = torch.where(digit_mask.reshape(-1), starts.long().cumsum(0) - 1, -1).view_as(lab)
    value_of = (lab.unsqueeze(-1) == digit_ids).long().argmax(-1)
    minus_one = torch.full_like(lab, -1)
    return CoordinateDigits(
        box_mask=box_mask, digit_mask=digit_mask,
        digit_value=torch.where(digit_mask, value_of, minus_one),
        place=torch.where(digit_mask, to_end - 1, minus_one),
        number_index=number_index, num_numbers=int(starts.sum()), num_long_runs=num_long_runs)


def _env_float(name: str, default: float, *, positive: bool) -> float:
    raw = os.environ.get(name, '').strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f'{name} = {raw!r}: expected a number') from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f'{name} = {raw!r}: expected a finite number {"> 0" if positive else ">= 0"}')
    return value


class _DigitTerm(torch.autograd.Function):
    """``sum_i w_i * sum_k softmax(z_i)_k * |k - d_i|`` with ``z_i = logits[b_i, t_i, digit_ids]``.

    Autograd would give the few digit rows a dense gradient the size of ``logits`` (B*T*V floats,
    allocated, zeroed and added to the CE gradient: as slow as CE's own backward on a large
    vocabulary). Instead ``backward`` returns None for ``logits`` and leaves its [Nd, 10] gradient
    in ``slot``; a hook on ``logits`` (:func:`_add_digit_grad`), which autograd runs only after
    every consumer of ``logits`` (this node included) has reported, adds it to the summed gradient.
    """

    @staticmethod
    def forward(ctx, logits, rows_b, rows_t, digit_ids, dist, weight, slot):
        z = logits[rows_b.unsqueeze(-1), rows_t.unsqueeze(-1), digit_ids].float()   # [Nd, 10]
        q = z.softmax(-1)
        ctx.save_for_backward(q, dist, weight)
        ctx.slot = slot
        return (weight * (q * dist).sum(-1)).sum()

    @staticmethod
    def backward(ctx, grad_output):
        q, dist, weight = ctx.saved_tensors
        # d/dz_k sum_j q_j c_j = q_k (c_k - sum_j q_j c_j), c = |k - d|
        expected = (q * dist).sum(-1, keepdim=True)
        ctx.slot.append(q * (dist - expected) * (weight * grad_output).unsqueeze(-1))
        return None, None, None, None, None, None, None


def _add_digit_grad(grad, *, slot, index, handle):
    """Hook on ``logits``: add the digit-term gradient left by :class:`_DigitTerm` to ``grad``."""
    handle[0].remove()
    if not slot:
        return None
    grad_z = slot.pop()
    # A contiguous summed gradient is a buffer of this backward pass: add in place (no copy of
    # B*T*V floats). Anything else (an expanded gradient, e.g. of logits.sum()) is copied first.
    if not grad.is_contiguous():
        grad = grad.contiguous()
    return grad.index_put_(index, grad_z.to(grad.dtype), accumulate=True)


class FundusGroundingLoss(BaseLoss):
    """Token CE plus the place-value digit Wasserstein term on box coordinates (module docstring).

    Args:
        args: ms-swift training arguments (unused).
        trainer: the ms-swift trainer; its ``template.tokenizer`` gives the token ids and its
            ``custom_metrics`` receives ``box_loss`` and ``coord_err``. May be None when
            ``token_ids`` is given (unit tests); no metrics are logged then.
        token_ids: override the ids read from the tokenizer.
        number_weight: ``lambda`` (>= 0); default from ``FUNDUS_GROUNDING_NUMBER_WEIGHT`` or 1.0.
        coord_unit: ``U`` in coordinate units (> 0); default from ``FUNDUS_GROUNDING_COORD_UNIT`` or 100.

    Raises:
        ValueError: bad ``number_weight`` / ``coord_unit`` (or their variables); a tokenizer
            without box delimiters or with multi-token digits (:func:`grounding_token_ids`).
        NotImplementedError: sequence parallelism or Megatron trainers (labels arrive sharded).
    """

    def __init__(self, args, trainer, *, token_ids: Optional[GroundingTokenIds] = None,
                 number_weight: Optional[float] = None, coord_unit: Optional[float] = None):
        super().__init__(args, trainer)
        if self.is_megatron or getattr(getattr(trainer, 'template', None), 'sequence_parallel_size', 1) > 1:
            raise NotImplementedError(f'--loss_type {LOSS_NAME} does not support sequence parallelism or Megatron; '
                                      'use --loss_type cross_entropy there')
        if number_weight is None:
            number_weight = _env_float(NUMBER_WEIGHT_ENV, DEFAULT_NUMBER_WEIGHT, positive=False)
        if coord_unit is None:
            coord_unit = _env_float(COORD_UNIT_ENV, DEFAULT_COORD_UNIT, positive=True)
        if not (math.isfinite(number_weight) and number_weight >= 0):
            raise ValueError(f'number_weight = {number_weight}: expected a finite number >= 0')
        if not (math.isfinite(coord_unit) and coord_unit > 0):
            raise ValueError(f'coord_unit = {coord_unit}: expected a finite number > 0')
        self.number_weight = float(number_weight)
        self.coord_unit = float(coord_unit)
        if token_ids is None:
            if trainer is None:
                raise ValueError('FundusGroundingLoss needs a trainer (for its tokenizer) or token_ids')
            token_ids = grounding_token_ids(trainer.template.tokenizer)
        self.token_ids = token_ids
        self.num_long_runs = 0

    def __call__(self, outputs, labels, *, num_items_in_batch=None, loss_scale=None, **kwargs) -> torch.Tensor:
        """Loss of one micro-batch.

        Args:
            outputs: model output with ``logits`` (torch.FloatTensor[B, T, V], possibly cropped by
                ``logits_to_keep`` together with the labels) and ``loss``: None, or ms-swift's
                per-token loss (torch.FloatTensor[B*T], already multiplied by ``loss_scale``).
            labels (torch.LongTensor[B, T]): unshifted labels aligned with the logits, -100 = no loss.
            num_items_in_batch (int or torch.Tensor, optional): labelled tokens over all
                gradient-accumulation micro-batches; None -> this micro-batch's count.
            loss_scale (torch.FloatTensor[B*T], optional): per-token weights, already shifted and
                flattened by the trainer (multiplied in only when ``outputs.loss`` is None).

        Returns:
            torch.Tensor: scalar loss, see the module docstring.
        """
        logits = outputs.logits
        shift_labels = torch.roll(labels, shifts=-1, dims=-1).to(logits.device)
        flat_labels = shift_labels.reshape(-1)
        if loss_scale is not None:
            loss_scale = loss_scale.reshape(-1).to(logits.device)
        token_loss = getattr(outputs, 'loss', None)
        if token_loss is not None and token_loss.numel() == flat_labels.numel():
            token_loss = token_loss.reshape(-1)       # ms-swift's per-token loss, loss_scale already applied
            plain_loss = None                         # per-token loss without loss_scale, for the metric
        else:
            plain_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), flat_labels,
                                         ignore_index=IGNORE_INDEX, reduction='none')
            token_loss = plain_loss if loss_scale is None else plain_loss * loss_scale
        if num_items_in_batch is None:
            num_items_in_batch = (flat_labels != IGNORE_INDEX).sum()
        total = token_loss.sum()

        coords = find_coordinate_digits(shift_labels, self.token_ids)
        if coords.num_long_runs:
            self.num_long_runs += coords.num_long_runs
            logger.warning('%s: %d digit run(s) inside boxes have more than %d digits and get CE only '
                           '(%d so far)', LOSS_NAME, coords.num_long_runs, MAX_DIGITS, self.num_long_runs)
        rows_b, rows_t = coords.digit_mask.nonzero(as_tuple=True)                  # [Nd] each
        digit_ids = torch.tensor(self.token_ids.digit_ids, device=logits.device)
        target = coords.digit_value[rows_b, rows_t]                                # [Nd]
        place_value = torch.pow(10.0, coords.place[rows_b, rows_t].float())        # [Nd]
        if rows_b.numel() and self.number_weight > 0:
            dist = (torch.arange(10, device=logits.device) - target.unsqueeze(-1)).abs().float()   # [Nd, 10]
            weight = place_value * (self.number_weight / self.coord_unit)
            slot: list = []
            total = total + _DigitTerm.apply(logits, rows_b, rows_t, digit_ids, dist, weight, slot)
            if torch.is_grad_enabled() and logits.requires_grad:
                handle: list = []
                handle.append(logits.register_hook(functools.partial(
                    _add_digit_grad, slot=slot, handle=handle,
                    index=(rows_b.unsqueeze(-1), rows_t.unsqueeze(-1), digit_ids))))
        self._log_metrics(logits, coords, rows_b, rows_t, digit_ids, target, place_value,
                          token_loss if plain_loss is None else plain_loss, loss_scale if plain_loss is None else None)
        return total / num_items_in_batch

    @torch.no_grad()
    def _log_metrics(self, logits, coords, rows_b, rows_t, digit_ids, target, place_value, token_loss,
                     loss_scale) -> None:
        """``box_loss``: per-token loss on box spans without loss_scale; ``coord_err``: |E[N] - n| per number."""
        metrics = getattr(self.trainer, 'custom_metrics', None)
        if metrics is None:
            return
        mode = 'train' if self.trainer.model.training else 'eval'
        box = coords.box_mask.reshape(-1)
        box_loss = token_loss.detach()[box]
        if loss_scale is not None:
            box_loss = box_loss / loss_scale[box].clamp_min(1e-12)
        if box_loss.numel():
            metrics[mode]['box_loss'].update(box_loss.float())
        if rows_b.numel():
            q = logits[rows_b.unsqueeze(-1), rows_t.unsqueeze(-1), digit_ids].float().softmax(-1)   # [Nd, 10]
            expected = (q * torch.arange(10, device=q.device)).sum(-1)
            signed = place_value * (expected - target)                   # 10^p (E[D] - d), coordinate units
            per_number = torch.zeros(coords.num_numbers, device=q.device, dtype=signed.dtype)
            per_number.index_add_(0, coords.number_index[rows_b, rows_t], signed)
            metrics[mode]['coord_err'].update(per_number.abs())


def register(exist_ok: bool = False) -> None:
    """Add ``fundus_grounding`` to ms-swift's ``loss_map`` (``--loss_type fundus_grounding``).

    Raises:
        ValueError: the name is already registered and ``exist_ok`` is False.
    """
    from swift.loss import loss_map

    from fundusexpert_plugin.swift_plugin.registry import add_to_map
    add_to_map(loss_map, LOSS_NAME, FundusGroundingLoss, exist_ok=exist_ok, flag='--loss_type')
