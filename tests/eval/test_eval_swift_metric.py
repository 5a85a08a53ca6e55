"""The ms-swift eval metric: decoded strings packed as tensors, literal and placeholder references."""
import json

import pytest
from PIL import Image

torch = pytest.importorskip('torch')
pytest.importorskip('swift')

from swift.utils import Serializer  # noqa: E402
from torch.nn.utils.rnn import pad_sequence  # noqa: E402
from transformers import EvalPrediction  # noqa: E402

from fundusexpert_plugin.swift_plugin import metrics as fm  # noqa: E402


def _packed(strings):
    # as swift/trainers/seq2seq_trainer.py::prediction_step: one pickled string per row, zero-padded
    return pad_sequence([Serializer.to_tensor(s) for s in strings], batch_first=True, padding_value=0).numpy()


def test_register_adds_the_metric_only_when_called():
    from swift.metrics import eval_metrics_map

    eval_metrics_map.pop(fm.METRIC_NAME, None)
    eval_metrics_map.pop(fm.METRIC_NAME_EDGE, None)
    assert fm.METRIC_NAME not in eval_metrics_map
    fm.register()
    assert eval_metrics_map[fm.METRIC_NAME] is fm.FundusGroundingMetrics
    assert eval_metrics_map[fm.METRIC_NAME_EDGE] is fm.FundusGroundingEdgeMetrics
    with pytest.raises(ValueError, match='already been registered for --eval_metric'):
        fm.register()    # ms-swift's rule: a second registration needs exist_ok
    eval_metrics_map[fm.METRIC_NAME] = dict
    fm.register(exist_ok=True)
    assert eval_metrics_map[fm.METRIC_NAME] is fm.FundusGroundingMetrics


def test_literal_references_are_scored_on_the_grid():
    preds = ['<ref>optic disc</ref><box>[[100, 100, 300, 300]]</box>', '', 'The answer is B']
    labels = ['<ref>optic disc</ref><box>[[100, 100, 300, 300]]</box>',
              '<ref>optic cup</ref><box>[[10, 10, 20, 20]]</box>', 'B']
    out = fm.FundusGroundingMetrics(None, None).compute_metrics(EvalPrediction(_packed(preds), _packed(labels)))
    # two reference boxes: IoU 1 and a miss (empty output) -> best-match IoU 0.5, Acc@0.5 1/2; one
    # prediction, matched -> precision 1.0; the MCQ row has no box
    assert out == {'grounding_acc50': 0.5, 'grounding_best_match_iou': 0.5, 'grounding_precision50': 1.0,
                   'grounding_n_gt': 2.0, 'grounding_unmatched': 0.0}


def test_placeholder_references_are_read_from_predict_jsonl(tmp_path):
    image = tmp_path / 'f.png'
    Image.new('RGB', (200, 100)).save(image)
    pred = '<ref>optic disc</ref><box>[[100, 100, 300, 500]]</box>'   # (20.1, 10.05, 60.1, 50.05) px
    row = {'response': pred, 'labels': '<ref-object><bbox>', 'images': [str(image)],
           'messages': [{'role': 'user', 'content': '<image>Locate the <ref-object>.'}],
           'objects': {'ref': ['optic disc', 'optic disc'], 'bbox': [[20, 10, 60, 50]]}}
    predict = tmp_path / 'predict.jsonl'
    predict.write_text(json.dumps({'response': 'older eval'}) + '\n' + json.dumps(row) + '\n')
    trainer = type('T', (), {'jsonl_writer': type('W', (), {'fpath': str(predict)})()})()
    out = fm.FundusGroundingMetrics(None, trainer).compute_metrics(
        EvalPrediction(_packed([pred]), _packed(['<ref-object><bbox>'])))
    assert out['grounding_acc50'] == 1.0 and out['grounding_best_match_iou'] == pytest.approx(0.99, abs=0.01)
    # a prediction that does not match the logged row is counted, not guessed
    out = fm.FundusGroundingMetrics(None, trainer).compute_metrics(
        EvalPrediction(_packed(['other']), _packed(['<ref-object><bbox>'])))
    assert out['grounding_unmatched'] == 1.0 and out['grounding_n_gt'] == 0.0


def test_edge_metric_decodes_the_grid_as_internvl(tmp_path):
    # reference (20, 10, 40, 30) px in a 200 x 100 image; prediction [[100, 100, 200, 300]]
    # edge:   v / 1000 * W -> (20, 10, 40, 30): IoU 1.0
    # centre: (v + 0.5) * W / 1000 -> (20.1, 10.05, 40.1, 30.05): inter 19.9 * 19.95 = 397.005,
    #         union 400 + 400 - 397.005 = 402.995 -> IoU 0.985136...
    image = tmp_path / 'f.png'
    Image.new('RGB', (200, 100)).save(image)
    pred = '<ref>optic disc</ref><box>[[100, 100, 200, 300]]</box>'
    row = {'response': pred, 'labels': '<ref-object><bbox>', 'images': [str(image)],
           'messages': [{'role': 'user', 'content': '<image>Locate it.'}],
           'objects': {'ref': ['optic disc'], 'bbox': [[20, 10, 40, 30]]}}
    predict = tmp_path / 'predict.jsonl'
    predict.write_text(json.dumps(row) + '\n')
    trainer = type('T', (), {'jsonl_writer': type('W', (), {'fpath': str(predict)})()})()
    ev = EvalPrediction(_packed([pred]), _packed(['<ref-object><bbox>']))
    edge = fm.FundusGroundingEdgeMetrics(None, trainer).compute_metrics(ev)
    centre = fm.FundusGroundingMetrics(None, trainer).compute_metrics(ev)
    assert edge['grounding_best_match_iou'] == pytest.approx(1.0)
    assert centre['grounding_best_match_iou'] == pytest.approx(397.005 / 402.995)
