"""Registers ``fundus_mmbench``, ``fundusgen_grounding`` and ``fundusgen_report`` with evalscope.

Loaded with the plugin file, so that::

    swift eval --external_plugins "$(fundusexpert swift plugin-path)" --eval_backend Native \\
        --eval_url http://127.0.0.1:8000/v1 --model <served name> \\
        --eval_dataset fundus_mmbench --eval_dataset_args '{"fundus_mmbench": {"local_path": "x.tsv"}}'

reports the numbers ``fundusexpert eval`` gives for the same responses. evalscope (1.10.0, the
version ms-swift 4.6.0 works with; ``scripts/setup_eval_env.sh``) is imported only here and only
when :func:`register` runs; without it :func:`register` does nothing, so the plugin file keeps
working for ``swift sft``/``infer`` in an environment without evalscope.

Each benchmark is a ``VisionLanguageAdapter`` (evalscope 1.x) whose data, per-item and subset
scores all come from :mod:`.eval_benchmarks`, i.e. from ``fundusexpert eval``'s scorers; no
evalscope filter or answer extraction is applied to the response. Per subset, the full
``fundusexpert eval`` output (``metrics.json``, ``samples.jsonl``, ``report.html``) is written to
``<eval work dir>/fundusexpert/<benchmark>/<subset>/``.

Benchmark arguments (``--eval_dataset_args '{"<benchmark>": {...}}'``): ``local_path`` (the TSV, or
the FundusGen folder; default ``$FUNDUSGEN_HELDOUT_DIR``, else the bundled sample's held-out
split), ``subset_list``, and ``extra_params``: ``box_space`` (e.g. ``{"qwen": "grid"}`` for
Qwen2-VL/Qwen3-VL), ``ap_score`` (``rank``|``constant``), ``max_pixels``/``min_pixels`` (only when
the model server ran with other values than this run's ``$MAX_PIXELS``/``$MIN_PIXELS``), and for
``fundusgen_report`` ``judge_base_url``, ``judge_model``, ``judge_api_key``, ``judge_timeout``,
``judge_max_retries``, ``lexicon`` (as ``fundusexpert eval --judge openai|offline``).
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Dict

from fundusexpert_plugin.swift_plugin import eval_benchmarks as eb

logger = logging.getLogger(__name__)

_FX = 'fundusexpert'
_COMMON_PARAMS = {
    'box_space': {'type': 'dict', 'value': {}, 'description':
                  'Space of a box convention, e.g. {"qwen": "grid"} for Qwen2-VL/Qwen3-VL (default: internvl=grid, '
                  'qwen=resized, json=resized, bare=grid), as `fundusexpert eval --box-space`.'},
    'ap_score': {'type': 'str', 'value': 'rank', 'choices': ['rank', 'constant'], 'description':
                 'Score of text boxes for COCO AP: rank (1/(1+k) for the k-th box) or constant.'},
    'max_pixels': {'type': 'int', 'value': None, 'description':
                   'Qwen max_pixels of the model server; default: $MAX_PIXELS of this run, as ms-swift reads it.'},
    'min_pixels': {'type': 'int', 'value': None, 'description': 'Qwen min_pixels of the model server; default $MIN_PIXELS.'},
}
_JUDGE_PARAMS = {
    'judge_base_url': {'type': 'str', 'value': None, 'description':
                       'OpenAI-compatible judge URL (e.g. http://127.0.0.1:8001/v1); default: the offline lexicon judge.'},
    'judge_model': {'type': 'str', 'value': 'gpt-4o', 'description': 'Judge model name.'},
    'judge_api_key': {'type': 'str', 'value': None, 'description': 'Judge API key (default $OPENAI_API_KEY, else EMPTY).'},
    'judge_timeout': {'type': 'float', 'value': 60.0, 'description': 'Seconds per judge request.'},
    'judge_max_retries': {'type': 'int', 'value': 2, 'description': 'Judge retries per report.'},
    'lexicon': {'type': 'str', 'value': None, 'description': 'Offline judge lexicon JSON (default: the packaged one).'},
}
SPECS: Dict[str, dict] = {
    eb.MMBENCH: dict(
        pretty_name='Fundus-MMBench', dataset_id='', metric_list=['strict_acc', 'lenient_acc'],
        description=('Fundus-MMBench / GMAI-MMBench-schema image MCQ TSV (local_path). The paper\'s prompt and its '
                     'strict first-character rule (strict_acc), the lenient rule beside it (lenient_acc), overall and '
                     'per category (every category of the file); scored by fundusexpert eval\'s MCQ scorer.'),
        extra_params={}),
    eb.GROUNDING: dict(
        pretty_name='FundusGen grounding', dataset_id=eb.GROUNDING,
        metric_list=['best_match_iou', 'acc50', 'coco_ap'],
        description=('Held-out region_detection and grounded_report rows of a FundusGen folder (local_path), scored by '
                     'fundusexpert eval\'s grounding scorer: best-match IoU, Acc@0.5, precision/recall@0.5 and COCO AP, '
                     'boxes mapped to original pixels with the template family\'s box convention.'),
        extra_params=dict(_COMMON_PARAMS)),
    eb.REPORT: dict(
        pretty_name='FundusGen report consistency', dataset_id=eb.REPORT,
        metric_list=['per_report_mean', 'pooled'],
        description=('Held-out report and grounded_report rows of a FundusGen folder (local_path), scored by clinical '
                     'consistency (Score/Total of the paper) with the offline lexicon judge, or an OpenAI-compatible '
                     'judge when judge_base_url is given, as fundusexpert eval.'),
        extra_params={**_COMMON_PARAMS, **_JUDGE_PARAMS}),
}
_adapter_cls = None


def register() -> None:
    """Register the three benchmarks with evalscope's ``BENCHMARK_REGISTRY`` (once; names already
    there are left alone). Does nothing when evalscope is not importable."""
    try:
        from evalscope.api.benchmark import BenchmarkMeta
        from evalscope.api.registry import BENCHMARK_REGISTRY, register_benchmark
        from evalscope.constants import Tags
    except ImportError as exc:
        logger.debug('fundusexpert: evalscope not importable (%s); swift eval benchmarks not registered', exc)
        return
    adapter = adapter_class()
    for name, spec in SPECS.items():
        if name in BENCHMARK_REGISTRY:
            continue
        register_benchmark(BenchmarkMeta(
            name=name, subset_list=list(eb.BENCHMARKS[name]), default_subset=eb.BENCHMARKS[name][0],
            tags=[Tags.MULTI_MODAL, Tags.CUSTOM], paper_url='https://arxiv.org/abs/2507.17539', **spec))(adapter)


def adapter_class():
    """The evalscope data adapter shared by the three benchmarks (built on first call).

    Raises:
        ImportError: evalscope is not installed.
    """
    global _adapter_cls
    if _adapter_cls is None:
        _adapter_cls = _build_adapter_class()
    return _adapter_cls


def _build_adapter_class():
    from evalscope.api.benchmark import VisionLanguageAdapter
    from evalscope.api.dataset import DatasetDict, MemoryDataset, Sample
    from evalscope.api.messages import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser
    from evalscope.api.messages.content import ContentImage, ContentText
    from evalscope.api.metric import AggScore, Score
    from evalscope.report import Category, Metric, Report, Subset

    from fundusexpert_plugin.eval.report import EvalOptions, write_outputs

    roles = {'system': ChatMessageSystem, 'user': ChatMessageUser, 'assistant': ChatMessageAssistant}

    class FundusExpertAdapter(VisionLanguageAdapter):
        """Items from :mod:`.eval_benchmarks`, scored by ``fundusexpert eval``'s code (module docstring)."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.add_aggregation_name = False
            self._fx_categories = []
            self._fx_results = {}
            self._fx_judge = None
            self._fx_lock = threading.Lock()

        # ---- data
        def load(self):
            path = self.dataset_id
            if self.name == eb.MMBENCH and not path:
                raise FileNotFoundError('fundus_mmbench needs the TSV: --eval_dataset_args '
                                        '\'{"fundus_mmbench": {"local_path": "<file.tsv>"}}\'')
            if path == self.name:  # no local_path given
                path = eb.default_fundusgen_dir()
            datasets = {}
            for subset in self.subset_list:
                items = eb.benchmark_items(self.name, path, subset)
                if self.name == eb.MMBENCH:
                    self._fx_categories = eb.mmbench_categories(items)
                limit = self.limit
                if limit is not None:
                    items = items[:int(len(items) * limit) if isinstance(limit, float) else int(limit)]
                datasets[subset] = MemoryDataset([self._sample(item, subset) for item in items], name=self.name,
                                                 location=path)
            logger.info('%s: %s', self.name, {k: len(v) for k, v in datasets.items()})
            return DatasetDict(datasets), None

        def _sample(self, item, subset):
            messages = []
            for role, parts in eb.message_parts(item):
                content = [ContentImage(image=v) if kind == 'image' else ContentText(text=v) for kind, v in parts]
                messages.append(roles[role](content=content))
            return Sample(input=messages, target=item.target, id=item.index, group_id=item.index,
                          metadata={_FX: {'subset': subset, 'index': item.index, 'row': item.row, 'meta': item.meta}})

        # ---- scoring
        def _options(self):
            extra = self.extra_params or {}
            return EvalOptions(spaces=dict(extra.get('box_space') or {}), min_pixels=extra.get('min_pixels'),
                               max_pixels=extra.get('max_pixels'), ap_score_mode=extra.get('ap_score') or 'rank')

        def _judge(self):
            if self.name != eb.REPORT:
                return None
            with self._fx_lock:
                if self._fx_judge is None:
                    extra = self.extra_params or {}
                    self._fx_judge = eb.memoize_judge(eb.make_judge(
                        extra.get('judge_base_url'), extra.get('judge_model') or 'gpt-4o', extra.get('judge_api_key'),
                        timeout=float(extra.get('judge_timeout') or 60.0),
                        max_retries=int(extra.get('judge_max_retries') if extra.get('judge_max_retries') is not None
                                        else 2),
                        lexicon=extra.get('lexicon')))
            return self._fx_judge

        def match_score(self, original_prediction, filtered_prediction, reference, task_state):
            fx = task_state.metadata[_FX]
            row = eb.result_row(fx['row'], original_prediction)
            metrics, samples = eb.score_rows([row], [fx['meta']], judge=self._judge(), options=self._options())
            extracted = samples[0].get('mcq', {}).get('strict') if self.name == eb.MMBENCH else None
            return Score(value=eb.sample_values(self.name, metrics, samples[0]), prediction=original_prediction,
                         extracted_prediction=extracted,
                         metadata={_FX: {'subset': fx['subset'], 'index': fx['index'], 'row': row, 'meta': fx['meta']}})

        def aggregate_scores(self, sample_scores):
            fx = sorted((s.score.metadata[_FX] for s in sample_scores), key=lambda f: f['index'])
            subset = fx[0]['subset']
            metrics, samples = eb.score_rows([f['row'] for f in fx], [f['meta'] for f in fx], judge=self._judge(),
                                             options=self._options())
            self._fx_results[subset] = (metrics, samples)
            return [AggScore(score=e.score, metric_name=e.metric, num=e.num, aggregation_name='',
                             metadata={'group': e.group})
                    for e in eb.report_entries(self.name, metrics, self._fx_categories)]

        # ---- report
        def _on_generate_report(self, scores, model_name):
            table: Dict[str, Dict[str, list]] = {}
            for subset, aggs in scores.items():
                for agg in aggs:
                    group = (agg.metadata or {}).get('group', 'all')
                    table.setdefault(agg.metric_name, {}).setdefault(group, []).append(
                        Subset(name=subset, score=agg.score, num=agg.num))
            metrics = [Metric(name=name, categories=[Category(name=(group,), subsets=subsets)
                                                     for group, subsets in groups.items()])
                       for name, groups in table.items()]
            return Report(name=f'{model_name}@{self.name}', metrics=metrics, dataset_name=self.name,
                          model_name=model_name, dataset_description=self.description or '',
                          dataset_pretty_name=self.pretty_name or '')

        def _on_generate_report_end(self, report, output_dir, **kwargs):
            for subset, (metrics, samples) in self._fx_results.items():
                out = os.path.join(self.output_dir, _FX, self.name, subset)
                paths = write_outputs(out, metrics, samples)
                logger.info('%s/%s: fundusexpert eval outputs in %s', self.name, subset, paths['metrics'])

    return FundusExpertAdapter
