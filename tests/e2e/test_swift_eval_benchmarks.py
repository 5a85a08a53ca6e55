"""`swift eval` on fundus_mmbench, fundusgen_grounding and fundusgen_report, against a loopback stub with
fixed answers, reports the numbers `fundusexpert eval` gives for the same responses.

Runs in the side environment of scripts/setup_eval_env.sh (evalscope 1.10.0 cannot live in the
project's environment); skipped when it is not built.
"""
import glob
import json
import os
import subprocess
from pathlib import Path

import pytest

from fundusexpert_plugin.cli.demo import offline_env
from fundusexpert_plugin.cli.main import main
from fundusexpert_plugin.core import geometry
from fundusexpert_plugin.core.jsonl import load_jsonl
from fundusexpert_plugin.eval.mcq import INSTRUCTION
from fundusexpert_plugin.eval.mcq_tsv import tsv_to_swift_rows
from fundusexpert_plugin.eval.parse import qwen_resized_size
from fundusexpert_plugin.sample import SAMPLE_DIR
from fundusexpert_plugin.swift_plugin.registry import plugin_path
from fundusexpert_plugin.testing.openai_stub import OpenAIStub, image_digest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
MAX_PIXELS = 50176  # 64 tokens of 28x28: Qwen boxes are far from original pixels, so a wrong size shows

# index, category, answer, response: strict and lenient differ on 2, 3, 4, 6; evalscope's own
# extraction (ANSWER: X, else the last capital letter) would score 4 as A (a miss) and 3 as C
MCQ = [('1', 'Glaucoma', 'B', 'B'), ('2', 'Glaucoma', 'B', ' B'), ('3', 'DR', 'C', 'The answer is C.'),
       ('4', 'Glaucoma', 'B', 'A fundus with glaucoma'), ('5', 'DR', 'A', 'D'), ('6', '', 'C', '(C)')]


@pytest.fixture(scope='module')
def side_python():
    python = os.environ.get('FUNDUSEXPERT_EVAL_PYTHON')
    if python is None and (ROOT / '.venv-eval' / '.fundusexpert-eval-installed').exists():  # a finished build
        python = str(ROOT / '.venv-eval' / 'bin' / 'python')
    if python is None or not os.path.exists(python):
        pytest.skip('no side environment for swift eval (evalscope 1.10.0 cannot live in the project environment): '
                    'build it with `bash scripts/setup_eval_env.sh` (about 3 minutes) or set FUNDUSEXPERT_EVAL_PYTHON')
    return python


def _write_tsv(path):
    images = sorted(SAMPLE_DIR.glob('images/*.jpg'))
    lines = ['index\tquestion\tA\tB\tC\tD\tanswer\tcategory\timage_path']
    for (index, category, answer, _), image in zip(MCQ, images):
        lines.append(f'{index}\tWhat does fundus photograph {index} show?\tnormal\tglaucoma\tdiabetic retinopathy\t'
                     f'cataract\t{answer}\t{category}\t{image}')
    path.write_text('\n'.join(lines) + '\n', encoding='utf-8')


def _key(row, root):
    image = os.path.normpath(root / row['images'][0])
    user = [m['content'] for m in row['messages'] if m['role'] == 'user'][-1]
    return image_digest(Path(image).read_bytes()), user.replace('<image>', '').strip()


def _render(labels, objects, width, height):
    """The reference text with its placeholders filled in InternVL form (0-999 grid)."""
    refs, boxes, out = list(objects['ref']), list(objects['bbox']), labels
    ref = ''
    while '<ref-object>' in out or '<bbox>' in out:
        i, j = out.find('<ref-object>'), out.find('<bbox>')
        if i >= 0 and (j < 0 or i < j):
            ref = refs.pop(0)
            out = out.replace('<ref-object>', f'<ref>{ref}</ref>', 1)
        else:
            grid = geometry.box_px_to_grid(boxes.pop(0), width, height)
            out = out.replace('<bbox>', f'<box>[{list(grid)}]</box>', 1)
    return out


def _grounding_response(i, row):
    w, h = row['width'], row['height']
    if not row.get('objects'):  # the finding is absent: a false box on even rows
        return f'<ref>{row["target"].replace("_", " ")}</ref><box>[[100, 100, 200, 200]]</box>' if i % 2 == 0 else ''
    ref, box = row['objects']['ref'][0], row['objects']['bbox'][0]
    if i % 4 == 0:    # exact, InternVL grid
        return f'<ref>{ref}</ref><box>[{list(geometry.box_px_to_grid(box, w, h))}]</box>'
    if i % 4 == 1:    # shifted by a third of its width
        dx = (box[2] - box[0]) / 3
        return f'<ref>{ref}</ref><box>[{list(geometry.box_px_to_grid([box[0] + dx, box[1], box[2] + dx, box[3]], w, h))}]</box>'
    if i % 4 == 2:    # Qwen2.5-VL: pixels of the image resized under MAX_PIXELS
        rw, rh = qwen_resized_size(w, h, max_pixels=MAX_PIXELS)
        x1, y1, x2, y2 = (round(v) for v in geometry.box_px_to_resized(box, w, h, rw, rh))
        return f'<|object_ref_start|>{ref}<|object_ref_end|><|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>'
    return ''         # no answer


def _responses(heldout):
    """{task: [response per row]} for the FundusGen held-out tasks the benchmarks read."""
    out = {}
    for task in ('region_detection', 'grounded_report', 'report'):
        rows = load_jsonl(heldout / f'{task}.jsonl')
        if task == 'region_detection':
            out[task] = [_grounding_response(i, r) for i, r in enumerate(rows)]
        elif task == 'grounded_report':  # even rows: the reference with boxes; odd rows: text only, boxes dropped
            out[task] = [_render(r['messages'][-1]['content'], r['objects'], r['width'], r['height']) if i % 2 == 0
                         else r['messages'][-1]['content'].replace('<ref-object>', 'lesion').replace('<bbox>', '')
                         for i, r in enumerate(rows)]
        else:                            # row 0 denies every lesion; the rest are the reference reports
            out[task] = ['No haemorrhages, hard exudates or microaneurysms are seen.'] + \
                [r['messages'][-1]['content'] for r in rows[1:]]
    return out


def _infer_rows(rows, responses, root):
    out = []
    for row, response in zip(rows, responses):
        out.append({'response': response, 'labels': row['messages'][-1]['content'],
                    'messages': row['messages'][:-1] + [{'role': 'assistant', 'content': response}],
                    'images': [{'bytes': None, 'path': os.path.normpath(root / img)} for img in row['images']],
                    'objects': row.get('objects')})
    return out


def _fundusexpert_eval(rows_jsonl, meta, responses, root, out):
    rows = load_jsonl(rows_jsonl)
    result = out.with_suffix('.jsonl')
    result.write_text(''.join(json.dumps(r) + '\n' for r in _infer_rows(rows, responses, root)))
    assert main(['eval', '--result', str(result), '--meta', str(meta), '--out', str(out),
                 '--max-pixels', str(MAX_PIXELS)]) == 0
    return json.loads((out / 'metrics.json').read_text())


def _report_scores(report_path):
    """{(metric, group, subset): (score, num)} of an evalscope report."""
    report = json.loads(Path(report_path).read_text())
    return {(m['name'], c['name'][0], s['name']): (s['score'], s['num'])
            for m in report['metrics'] for c in m['categories'] for s in c['subsets']}


def test_swift_eval_reports_fundusexpert_eval_numbers(side_python, tmp_path):
    from fundusexpert_plugin.build import build_sample

    build_sample(tmp_path / 'fg', languages=['en'])
    heldout = tmp_path / 'fg' / 'heldout'
    tsv = tmp_path / 'mini.tsv'
    _write_tsv(tsv)

    # what `fundusexpert eval` says (swift infer result rows rebuilt with the same responses)
    rows_jsonl, meta = tsv_to_swift_rows(str(tsv), str(tmp_path / 'mcq_rows.jsonl'))
    expected = {'mcq': _fundusexpert_eval(Path(rows_jsonl), meta, [m[3] for m in MCQ], tmp_path, tmp_path / 'fx_mcq')}
    responses = _responses(heldout)
    for task, answers in responses.items():
        expected[task] = _fundusexpert_eval(heldout / f'{task}.jsonl', heldout / f'{task}.jsonl', answers, heldout,
                                            tmp_path / f'fx_{task}')

    answers = {_key(r, tmp_path): m[3] for r, m in zip(load_jsonl(rows_jsonl), MCQ)}
    for task, texts in responses.items():
        answers.update({_key(r, heldout): t for r, t in zip(load_jsonl(heldout / f'{task}.jsonl'), texts)})
    out = tmp_path / 'swift_eval'
    args = {'fundus_mmbench': {'local_path': str(tsv)}, 'fundusgen_grounding': {'local_path': str(heldout)},
            'fundusgen_report': {'local_path': str(heldout)}}
    env = offline_env(MAX_PIXELS=str(MAX_PIXELS), FUNDUSEXPERT_CACHE=str(tmp_path / 'cache'),
                      PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]))
    with OpenAIStub(answers, default='unexpected request') as stub:
        cmd = [side_python, '-c', 'import sys; from swift.cli.main import cli_main; sys.exit(cli_main())', 'eval',
               '--eval_url', stub.base_url, '--model', stub.model, '--external_plugins', plugin_path(),
               '--eval_backend', 'Native', '--eval_dataset', 'fundus_mmbench', 'fundusgen_grounding', 'fundusgen_report',
               '--eval_dataset_args', json.dumps(args), '--eval_output_dir', str(out)]
        # cwd: with --eval_url, swift eval appends to ./result/<model>/eval_result.jsonl wherever it runs
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
                              cwd=tmp_path)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        requests = list(stub.requests)

    n_rows = len(MCQ) + sum(len(v) for v in responses.values()) + len(responses['grounded_report'])
    assert len(requests) == n_rows               # grounded_report is in two benchmarks
    mcq_texts = [t for r in requests for m in r['messages'] if isinstance(m['content'], list) for p in m['content']
                 if p.get('type') == 'text'
                 for t in [p['text']] if t.startswith(INSTRUCTION)]
    assert len(mcq_texts) == len(MCQ) and all('\nA. normal\nB. glaucoma\n' in t for t in mcq_texts)  # paper prompt

    run_dir = Path(glob.glob(str(out / 'native' / '*'))[0])
    assert (tmp_path / 'result' / stub.model / 'eval_result.jsonl').is_file()   # swift's own summary, not in the repo
    side = lambda bench, subset: json.loads((run_dir / 'fundusexpert' / bench / subset / 'metrics.json').read_text())

    # Fundus-MMBench: strict 1/6, lenient 5/6 (hand-checked; evalscope's extraction would give 4/6)
    got = side('fundus_mmbench', 'default')['mcq']
    assert got == expected['mcq']['mcq']
    assert got['strict'] == {'overall': 0.167, 'per_category': {'DR': 0.0, 'Glaucoma': 0.333, 'Unknown': 0.0}}
    assert got['lenient'] == {'overall': 0.833, 'per_category': {'DR': 0.5, 'Glaucoma': 1.0, 'Unknown': 1.0}}
    scores = _report_scores(run_dir / 'reports' / stub.model / 'fundus_mmbench.json')
    assert scores[('strict_acc', 'all', 'default')] == (0.167, 6)
    assert scores[('lenient_acc', 'all', 'default')] == (0.833, 6)
    for rule in ('strict', 'lenient'):
        for category, value in got[rule]['per_category'].items():
            assert scores[(f'{rule}_acc_by_category', category, 'default')] == (value, got['per_category_n'][category])

    # FundusGen grounding: every number of fundusexpert eval, per task
    scores = _report_scores(run_dir / 'reports' / stub.model / 'fundusgen_grounding.json')
    for task in ('region_detection', 'grounded_report'):
        got = side('fundusgen_grounding', task)['grounding']
        assert got == expected[task]['grounding']
        for key, value in [*got.items(), *((f'coco_{k}', v) for k, v in got['coco'].items())]:
            if isinstance(value, float):
                assert scores[(key, 'all', task)] == (round(value, 4), got['n_pred' if key.startswith('precision')
                                                                          else 'n_gt'])
    assert 0 < expected['region_detection']['grounding']['acc50'] < 1

    # FundusGen reports: clinical consistency with the offline judge
    scores = _report_scores(run_dir / 'reports' / stub.model / 'fundusgen_report.json')
    for task in ('report', 'grounded_report'):
        got = side('fundusgen_report', task)['consistency']
        assert got == expected[task]['consistency']
        assert scores[('per_report_mean', 'all', task)] == (round(got['per_report_mean'], 4), got['n_scored'])
        assert scores[('pooled', 'all', task)] == (round(got['pooled'], 4), got['total_sum'])
    assert expected['report']['consistency']['pooled'] < 1
