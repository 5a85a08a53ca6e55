"""``--loss_type fundus_grounding``: hand-computed values on tiny logits, the ms-swift call contract, the CLI.

Toy vocabulary of every hand-computed test (V = 16): ids 0-9 are the digits '0'..'9', 10 opens a
box, 11 closes it, 12 is ',', 13-15 are text. Logits are 0 except where a test sets digit logits to
-1e4 (exp(-1e4) == 0 in float32), so every probability is a simple fraction:

* all 16 logits 0: p(target) = 1/16, CE = ln 16 = 2.772588722;
* two digits at 0, eight digits at -1e4, six non-digits at 0: p = 1/8, CE = ln 8 = 2.079441542,
  and the distribution renormalised over the ten digits (q) is 1/2 on each of the two digits.
"""
import collections
import copy
import json
import math
import types

import pytest
import torch
import torch.nn.functional as F

from fundusexpert_plugin.sample import SAMPLE_DIR
from fundusexpert_plugin.swift_plugin import loss as loss_mod
from fundusexpert_plugin.swift_plugin.loss import (FundusGroundingLoss, GroundingTokenIds, find_coordinate_digits,
                                                   grounding_token_ids)

V = 16
OPEN, CLOSE, COMMA, TEXT = 10, 11, 12, 13
IDS = GroundingTokenIds(open_ids=(OPEN,), close_ids=(CLOSE,), digit_ids=tuple(range(10)))
LN16, LN8 = math.log(16), math.log(8)
NEG = -1e4


def two_digit_logits(a, b):
    """Logits [V] with digits a and b at 0, the other digits at -1e4, non-digits at 0."""
    row = torch.zeros(V)
    row[:10] = NEG
    row[a] = row[b] = 0.0
    return row


def out(logits, loss=None):
    return types.SimpleNamespace(logits=logits, loss=loss)


class FakeTrainer:
    """What the loss reads from an ms-swift trainer: custom_metrics, model.training, template."""

    def __init__(self):
        from swift.metrics.utils import MeanMetric
        self.custom_metrics = {m: collections.defaultdict(lambda: MeanMetric(nan_value=None, device='cpu'))
                               for m in ('train', 'eval')}
        self.model = types.SimpleNamespace(training=True)
        self.template = types.SimpleNamespace(sequence_parallel_size=1)

    def logged(self, mode='train'):
        logs = {}
        for key, metric in self.custom_metrics[mode].items():
            value = metric.compute()['value']
            if value is not None:
                logs[key] = value
        return logs


def make_loss(trainer=None, **kw):
    return FundusGroundingLoss(None, trainer, token_ids=IDS, **kw)


# One sample: text, <open> 3 5 , 7 <close>, i.e. the numbers 35 and 7 in one box.
LABELS_1 = torch.tensor([[-100, TEXT, OPEN, 3, 5, COMMA, 7, CLOSE]])


def logits_1():
    # Shifted targets (labels rolled by -1): t=0 TEXT, 1 OPEN, 2 '3', 3 '5', 4 ',', 5 '7', 6 CLOSE, 7 -100.
    logits = torch.zeros(1, 8, V)
    logits[0, 2] = two_digit_logits(3, 5)   # tens digit of 35: q = 1/2 on 3, 1/2 on 5
    logits[0, 3] = two_digit_logits(5, 9)   # units digit of 35: q = 1/2 on 5, 1/2 on 9
    return logits                           # t=5 ('7', a one-digit number): all 0, q uniform on 0-9


# Hand computation for LABELS_1 / logits_1 (lambda = 1, U = 100):
#   CE: t = 0, 1, 4, 5, 6 -> ln 16 each; t = 2, 3 -> ln 8 each; 7 labelled tokens.
#   sum CE = 5 ln 16 + 2 ln 8 = 13.862943611 + 4.158883083 = 18.021826694
#   digit term (place value * E|D - d|):
#     t=2 tens of 35:  10 * (0.5*|3-3| + 0.5*|5-3|) = 10 * 1   = 10
#     t=3 units of 35:  1 * (0.5*|5-5| + 0.5*|9-5|) =  1 * 2   =  2
#     t=5 units of 7:   1 * (7+6+5+4+3+2+1+0+1+2)/10 = 31/10   = 3.1
#   sum = 15.1 -> / U = 0.151
#   loss = (18.021826694 + 0.151) / 7 = 2.596118099
SUM_CE_1 = 5 * LN16 + 2 * LN8
LOSS_1 = (SUM_CE_1 + 0.151) / 7


def test_one_box_two_numbers_matches_hand_computation():
    loss = make_loss()(out(logits_1()), LABELS_1)
    assert loss.item() == pytest.approx(2.596118099, rel=1e-6)
    assert loss.item() == pytest.approx(LOSS_1, rel=1e-6)


def test_metrics_box_loss_and_coord_err_by_hand():
    trainer = FakeTrainer()
    make_loss(trainer)(out(logits_1()), LABELS_1)
    logs = trainer.logged()
    # box_loss: box-span targets t = 1..6 (OPEN 3 5 , 7 CLOSE): (4 ln 16 + 2 ln 8) / 6
    #   = (11.090354889 + 4.158883083) / 6 = 2.541539662
    assert logs['box_loss'] == pytest.approx(2.541539662, rel=1e-6)
    # coord_err: 35 -> E = 10*(0.5*3+0.5*5) + (0.5*5+0.5*9) = 40 + 7 = 47, |47 - 35| = 12;
    #             7 -> E = (0+1+...+9)/10 = 4.5, |4.5 - 7| = 2.5; mean (12 + 2.5) / 2 = 7.25
    assert logs['coord_err'] == pytest.approx(7.25, rel=1e-6)
    assert trainer.logged('eval') == {}


def test_no_box_in_batch_equals_plain_cross_entropy_and_logs_nothing():
    # digits outside a box ("grade 2") are ordinary text
    labels = torch.tensor([[-100, TEXT, 2, TEXT, COMMA], [-100, -100, TEXT, 7, -100]])
    logits = torch.zeros(2, 5, V)
    logits[0, 1] = two_digit_logits(2, 3)
    trainer = FakeTrainer()
    loss = make_loss(trainer)(out(logits), labels)
    # 6 labelled tokens: 5 at ln 16, the '2' at ln 8 -> (5 ln 16 + ln 8) / 6
    #   = (13.862943611 + 2.079441542) / 6 = 15.942385153 / 6 = 2.657064192
    assert loss.item() == pytest.approx(2.657064192, rel=1e-6)
    from swift.loss.causal_lm import CustomCrossEntropyLoss
    reference = CustomCrossEntropyLoss(None, None)(out(logits), labels)   # ms-swift's own cross_entropy
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    assert trainer.logged() == {}


def test_near_miss_costs_less_than_far_miss_with_equal_cross_entropy():
    # box [350]: the hundreds-digit logits put all mass on one wrong digit, 4 (near) or 9 (far)
    labels = torch.tensor([[-100, OPEN, 3, 5, 0, CLOSE]])

    def loss_for(wrong):
        logits = torch.zeros(1, 6, V)
        logits[0, 1, :10] = NEG
        logits[0, 1, wrong] = 0.0           # CE of the '3' target: p(3) = e^-1e4 / 7 -> same for both
        return make_loss()(out(logits), labels).item()

    near, far = loss_for(4), loss_for(9)
    # difference = place value 100 * (|9-3| - |4-3|) / U / 5 labelled tokens = 100 * 5 / 100 / 5 = 1.0
    assert far - near == pytest.approx(1.0, abs=1e-3)   # both losses are ~2000: float32 resolution ~2e-4


def test_several_boxes_with_padding_and_gradient_accumulation_denominator():
    # row 0: <open>12,3<close> text <open>40<close>; row 1: <open>9<close> then right padding
    labels = torch.tensor([[-100, OPEN, 1, 2, COMMA, 3, CLOSE, TEXT, OPEN, 4, 0, CLOSE],
                           [-100, OPEN, 9, CLOSE, -100, -100, -100, -100, -100, -100, -100, -100]])
    logits = torch.zeros(2, 12, V)
    coords = find_coordinate_digits(torch.roll(labels, -1, -1), IDS)
    assert coords.num_numbers == 4    # 12, 3, 40, 9
    # all logits 0: every CE is ln 16 and every digit distribution uniform, E|D - d| = mean_k |k - d|:
    #   d=1: (1+0+1+...+8)/10 = 37/10 = 3.7   d=2: (2+1+0+1+...+7)/10 = 31/10 = 3.1
    #   d=3: 27/10 = 2.7   d=4: 25/10 = 2.5   d=0: 45/10 = 4.5   d=9: 45/10 = 4.5
    # term = 10*3.7 + 3.1 (12) + 2.7 (3) + 10*2.5 + 4.5 (40) + 4.5 (9) = 37+3.1+2.7+25+4.5+4.5 = 76.8 -> /100 = 0.768
    # labelled tokens: 11 in row 0 + 3 in row 1 = 14; CE sum = 14 ln 16 = 38.816242111
    local = make_loss()(out(logits), labels)
    assert local.item() == pytest.approx((38.816242111 + 0.768) / 14, rel=1e-6)
    # gradient accumulation: the trainer passes the count over all micro-batches (say 14 + 26 = 40)
    accumulated = make_loss()(out(logits), labels, num_items_in_batch=torch.tensor(40))
    assert accumulated.item() == pytest.approx((38.816242111 + 0.768) / 40, rel=1e-6)


def test_micro_batch_losses_sum_to_the_full_batch_loss():
    torch.manual_seed(0)
    labels = torch.tensor([[-100, OPEN, 1, 2, COMMA, 3, CLOSE, TEXT],
                           [-100, TEXT, OPEN, 9, 9, 8, CLOSE, -100]])
    logits = torch.randn(2, 8, V)
    n = int((labels[:, 1:] != -100).sum())
    fn = make_loss()
    full = fn(out(logits), labels, num_items_in_batch=n)
    parts = fn(out(logits[:1]), labels[:1], num_items_in_batch=n) + fn(out(logits[1:]), labels[1:],
                                                                         num_items_in_batch=n)
    assert parts.item() == pytest.approx(full.item(), rel=1e-6)


def test_batch_size_one_cropped_logits_give_the_uncropped_loss():
    # ms-swift's prepare_logits_to_keep for batch size 1 (swift/trainers/mixin.py): labels keep only
    # labelled positions, left-padded with one -100; logits keep positions whose next label is set,
    # plus the last position.
    labels = torch.tensor([[-100, -100, -100, TEXT, OPEN, 3, 5, COMMA, 7, CLOSE, -100, -100]])
    full_logits = torch.zeros(1, 12, V)
    full_logits[0, 4] = two_digit_logits(3, 5)     # predicts '3' (position 5)
    full_logits[0, 5] = two_digit_logits(5, 9)     # predicts '5'
    loss_mask = (labels != -100)[0]
    cropped_labels = F.pad(labels[:, loss_mask], (1, 0), value=-100)
    logits_to_keep = F.pad(loss_mask[1:], (0, 1), value=True)
    cropped_logits = full_logits[:, logits_to_keep]
    assert cropped_labels.tolist() == LABELS_1.tolist() and cropped_logits.shape == (1, 8, V)
    cropped = make_loss()(out(cropped_logits), cropped_labels)
    uncropped = make_loss()(out(full_logits), labels)
    # same 7 targets and distributions as the one-box test: 2.596118099
    assert cropped.item() == pytest.approx(LOSS_1, rel=1e-6)
    assert uncropped.item() == pytest.approx(LOSS_1, rel=1e-6)


def test_loss_scale_weights_cross_entropy_when_outputs_loss_is_none():
    # loss_scale arrives rolled and flattened: weight 2 on the box-span targets t = 1..6
    scale = torch.tensor([1., 2., 2., 2., 2., 2., 2., 0.])
    loss = make_loss()(out(logits_1()), LABELS_1, loss_scale=scale)
    # sum CE = ln 16 + 2 * (4 ln 16 + 2 ln 8) = 2.772588722 + 2 * 15.249237972 = 33.271064666
    assert loss.item() == pytest.approx((33.271064666 + 0.151) / 7, rel=1e-6)


def test_precomputed_per_token_loss_from_the_trainer_is_used_as_is():
    # ms-swift sets outputs.loss = CE * loss_scale (flattened) whenever a loss_scale exists
    token_loss = torch.tensor([1., 2., 3., 4., 5., 6., 7., 0.])
    scale = torch.full((8,), 2.0)
    trainer = FakeTrainer()
    loss = make_loss(trainer)(out(logits_1(), loss=token_loss), LABELS_1, loss_scale=scale)
    # (1+2+...+7 + 0.151) / 7 = 28.151 / 7 = 4.021571429
    assert loss.item() == pytest.approx(4.021571429, rel=1e-6)
    # box_loss divides the scale back out: (2+3+4+5+6+7) / 2 / 6 = 27 / 12 = 2.25
    assert trainer.logged()['box_loss'] == pytest.approx(2.25)


def test_hyperparameters_scale_the_digit_term():
    # lambda = 2, U = 10: term = 2 * 15.1 / 10 = 3.02
    loss = make_loss(number_weight=2.0, coord_unit=10.0)(out(logits_1()), LABELS_1)
    assert loss.item() == pytest.approx((SUM_CE_1 + 3.02) / 7, rel=1e-6)
    # lambda = 0: plain (scaled) CE
    assert make_loss(number_weight=0.0)(out(logits_1()), LABELS_1).item() == pytest.approx(SUM_CE_1 / 7, rel=1e-6)


def test_gradient_equals_plain_autograd_reference():
    """The digit gradient is added by a hook on the logits; compare with a straightforward autograd version."""
    torch.manual_seed(0)
    labels = torch.tensor([[-100, TEXT, OPEN, 1, 2, COMMA, 9, CLOSE, TEXT, OPEN, 3, 0, 7, CLOSE],
                           [-100, -100, OPEN, 7, COMMA, 0, 0, 5, CLOSE, -100, -100, -100, -100, -100]])
    base = torch.randn(2, 14, V, requires_grad=True)

    def reference(logits):
        shifted = torch.roll(labels, -1, -1)
        ce = F.cross_entropy(logits.reshape(-1, V), shifted.reshape(-1), ignore_index=-100, reduction='sum')
        coords = find_coordinate_digits(shifted, IDS)
        b, t = coords.digit_mask.nonzero(as_tuple=True)
        q = logits[b, t, :10].softmax(-1)
        w1 = (q * (torch.arange(10) - coords.digit_value[b, t, None]).abs()).sum(-1)
        term = (10.0 ** coords.place[b, t] * w1).sum() * 0.7 / 50
        return (ce + term) / int((shifted != -100).sum())

    fn = make_loss(number_weight=0.7, coord_unit=50.0)
    ours = fn(out(base * 3.0), labels)          # non-leaf logits, as from an lm_head
    ours.backward()
    grad_ours, base.grad = base.grad.clone(), None
    ref = reference(base * 3.0)
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(grad_ours, base.grad, rtol=1e-5, atol=1e-7)


def test_digit_gradient_is_added_to_an_expanded_upstream_gradient():
    # outputs.loss = logits.sum(-1): its gradient w.r.t. the logits is an expanded (stride-0) tensor of ones
    logits = torch.zeros(1, 8, V, requires_grad=True)
    make_loss(number_weight=7.0)(out(logits, loss=logits.sum(-1).reshape(-1)), LABELS_1).backward()
    # t=5 (target '7', place 0, uniform q = 0.1): d/dz_k [7/100 * sum_j q_j |j - 7|] / 7 = 0.01 * q_k (|k - 7| - 3.1)
    #   k = 0: 0.01 * 0.1 * (7 - 3.1) = 0.0039, so the gradient there is 1/7 (from the sum) + 0.0039
    assert logits.grad[0, 5, 0].item() == pytest.approx(1 / 7 + 0.0039, rel=1e-5)
    assert logits.grad[0, 5, 7].item() == pytest.approx(1 / 7 - 0.0031, rel=1e-5)
    assert logits.grad[0, 0, 0].item() == pytest.approx(1 / 7, rel=1e-6)       # a non-digit row: sum only


def test_works_without_grad_in_eval_mode():
    trainer = FakeTrainer()
    trainer.model.training = False
    with torch.no_grad():
        loss = make_loss(trainer)(out(logits_1()), LABELS_1)
    assert loss.item() == pytest.approx(LOSS_1, rel=1e-6)
    assert trainer.logged('eval')['coord_err'] == pytest.approx(7.25) and trainer.logged('train') == {}


def test_find_coordinate_digits_places_and_numbers():
    # <open> 1 2 , 3 <close> 4 <open> 5 <-100>: '4' is outside; an ignored label ends the open span
    shifted = torch.tensor([[OPEN, 1, 2, COMMA, 3, CLOSE, 4, OPEN, 5, -100, 6]])
    c = find_coordinate_digits(shifted, IDS)
    assert c.box_mask[0].tolist() == [1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0]
    assert c.digit_value[0].tolist() == [-1, 1, 2, -1, 3, -1, -1, -1, 5, -1, -1]
    assert c.place[0].tolist() == [-1, 1, 0, -1, 0, -1, -1, -1, 0, -1, -1]
    assert c.number_index[0].tolist() == [-1, 0, 0, -1, 1, -1, -1, -1, 2, -1, -1]
    assert (c.num_numbers, c.num_long_runs) == (3, 0)


def test_digit_runs_longer_than_max_digits_get_cross_entropy_only():
    labels = torch.tensor([[-100, OPEN, 1, 2, 3, 4, 5, 6, CLOSE]])      # 123456: 6 digits > MAX_DIGITS = 5
    fn = make_loss()
    loss = fn(out(torch.zeros(1, 9, V)), labels)
    assert loss.item() == pytest.approx(LN16, rel=1e-6)                # 8 targets at ln 16, no digit term
    assert fn.num_long_runs == 1


def test_invalid_hyperparameters_raise(monkeypatch):
    with pytest.raises(ValueError, match='coord_unit = 0.0: expected a finite number > 0'):
        make_loss(coord_unit=0.0)
    monkeypatch.setenv('FUNDUS_GROUNDING_NUMBER_WEIGHT', 'abc')
    with pytest.raises(ValueError, match=r"FUNDUS_GROUNDING_NUMBER_WEIGHT = 'abc': expected a number"):
        make_loss()
    monkeypatch.setenv('FUNDUS_GROUNDING_NUMBER_WEIGHT', '0.5')
    monkeypatch.setenv('FUNDUS_GROUNDING_COORD_UNIT', '250')
    fn = make_loss()
    assert (fn.number_weight, fn.coord_unit) == (0.5, 250.0)


def test_tokenizer_without_box_delimiters_raises():
    tok = types.SimpleNamespace(encode=lambda text, add_special_tokens=False: [ord(c) for c in text])
    with pytest.raises(ValueError, match='none of the box delimiter pairs'):
        grounding_token_ids(tok)


@pytest.mark.parametrize('family, opens, closes', [
    ('qwen2_5_vl', (151648,), (151649,)),
    ('internvl', (151648, 151672), (151649, 151673)),      # the InternVL tokenizer has both pairs
])
def test_token_ids_of_the_tiny_tokenizers(family, opens, closes, tiny_qwen_dir, tiny_internvl_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(tiny_qwen_dir if family == 'qwen2_5_vl' else tiny_internvl_dir))
    ids = grounding_token_ids(tok)
    assert (ids.open_ids, ids.close_ids) == (opens, closes)
    assert ids.digit_ids == tuple(range(15, 25))          # '0'..'9' as in Qwen2.5's vocabulary


# The row of tests/swift_plugin/test_templates.py (1072 x 712 image; Qwen at MAX_PIXELS 50176 -> 252 x 168).
ROW = {
    'messages': [{'role': 'user', 'content': '<image>Locate the hard exudates.'},
                 {'role': 'assistant', 'content': '<ref-object><bbox><bbox> and <ref-object><bbox>'}],
    'images': [str(SAMPLE_DIR / 'images' / '0003.jpg')],
    'objects': {'ref': ['hard exudates', 'optic disc'],
                'bbox': [[166.25, 239.5, 316.0, 407.0], [0, 0, 1072, 712], [10, 20, 30, 40]], 'bbox_type': 'real'},
}


def _numbers(coords):
    values = collections.defaultdict(int)
    for value, place, number in zip(coords.digit_value[0].tolist(), coords.place[0].tolist(),
                                    coords.number_index[0].tolist()):
        if number >= 0:
            values[number] += value * 10 ** place
    return [values[i] for i in range(coords.num_numbers)]


@pytest.mark.parametrize('family, template, expected', [
    ('qwen2_5_vl', 'fundusexpert_qwen2_5_vl', [39, 57, 74, 96, 0, 0, 252, 168, 2, 5, 7, 9]),
    ('internvl', 'fundusexpert_internvl', [155, 336, 294, 571, 0, 0, 999, 999, 9, 28, 27, 56]),
])
def test_coordinates_found_in_real_template_labels(family, template, expected, swift_registered, tiny_qwen_dir,
                                                   tiny_internvl_dir, monkeypatch):
    """Rendered boxes of tests/swift_plugin/test_templates.py: the numbers are read back from the labels."""
    from swift import get_processor, get_template
    monkeypatch.setenv('MAX_PIXELS', '50176')
    model_dir = tiny_qwen_dir if family == 'qwen2_5_vl' else tiny_internvl_dir
    tpl = get_template(get_processor(str(model_dir), model_type=family, download_model=False), template_type=template)
    tpl.set_mode('train')
    labels = torch.tensor([tpl.encode(copy.deepcopy(ROW))['labels']])
    coords = find_coordinate_digits(torch.roll(labels, -1, -1), grounding_token_ids(tpl.tokenizer))
    assert _numbers(coords) == expected


def test_second_registration_raises_without_exist_ok(swift_registered):
    from swift.loss import loss_map
    assert loss_map['fundus_grounding'] is FundusGroundingLoss
    with pytest.raises(ValueError, match='already been registered'):
        loss_mod.register(exist_ok=False)
    loss_mod.register(exist_ok=True)


@pytest.mark.slow
def test_swift_sft_two_steps_logs_box_loss_and_coord_err(tmp_path, tiny_qwen_dir):
    """``swift sft`` through the plugin file with both flags; the extra metrics are in the log."""
    from fundusexpert_plugin.build import build_sample
    from fundusexpert_plugin.cli.demo import offline_env, run_logged, sft_command
    build_sample(tmp_path / 'fundusgen', languages=['en'])
    cmd = sft_command(tiny_qwen_dir, tmp_path / 'sft', template='fundusexpert_qwen2_5_vl',
                      dataset=['fundusgen:region_detection#4'], steps=2, seed=0)
    cmd += ['--loss_type', 'fundus_grounding', '--loss_scale', 'fundus_grounding']
    env = offline_env(FUNDUSGEN_DIR=str(tmp_path / 'fundusgen' / 'train'), FUNDUSEXPERT_CACHE=str(tmp_path / 'cache'))
    run_logged(cmd, tmp_path / 'sft.log', env)
    log_file = next((tmp_path / 'sft').glob('**/logging.jsonl'))
    logs = [json.loads(line) for line in log_file.read_text().splitlines()]
    steps = [entry for entry in logs if 'loss' in entry and 'box_loss' in entry]
    assert len(steps) == 2
    for entry in steps:
        assert entry['box_loss'] > 0 and entry['coord_err'] >= 0 and math.isfinite(entry['loss'])
