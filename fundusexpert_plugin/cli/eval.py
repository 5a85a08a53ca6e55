"""``fundusexpert eval score|mcq-rows|mcq-export``: score ``swift infer`` results; MCQ benchmark files.

Example (``fundusexpert eval --result ...`` is the same as ``eval score``)::

    fundusexpert eval score --result infer_result/20250101.jsonl --meta rows.meta.jsonl --out eval_out \\
        --judge openai --judge-base-url http://127.0.0.1:8000/v1 --judge-model gpt-4o
    # swift infer --val_dataset fundusgen_heldout:mcq fundusgen_heldout:grounded_report: the FundusGen
    # task files, in --val_dataset order
    fundusexpert eval score --result mix.jsonl --meta heldout/mcq.jsonl --meta heldout/grounded_report.jsonl \\
        --out eval_mix

Verbs: ``score`` (:func:`add_score_arguments`/:func:`run_score`), ``mcq-rows`` (TSV -> swift rows
+ meta side file) and ``mcq-export`` (FundusGen MCQ rows -> TSV).
"""
from __future__ import annotations

import argparse
import sys

from fundusexpert_plugin.cli.common import (add_command, add_verbs, non_negative_int, positive_float,
                                            positive_int)
from fundusexpert_plugin.core.geometry import GRID_DECODE_RULES



def _space(value: str):
    from fundusexpert_plugin.eval.parse import CONVENTIONS, SPACES
    conv, _, space = value.partition('=')
    if conv not in CONVENTIONS or space not in SPACES:
        raise argparse.ArgumentTypeError(f'expected CONVENTION=SPACE with CONVENTION in {CONVENTIONS} and SPACE in '
                                         f'{SPACES}, got {value!r}')
    return conv, space


def add_score_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``fundusexpert eval score``."""
    parser.add_argument('--result', required=True, help='swift infer result jsonl (--result_path)')
    parser.add_argument('--out', required=True, help='output folder: metrics.json, report.html, PNG, samples.jsonl')
    parser.add_argument('--meta', action='append', metavar='JSONL',
                        help='what each result row is, joined by row position: a FundusGen task file (e.g. '
                        'heldout/region_detection.jsonl, the file swift infer read), or several of them for a '
                        'multi-task swift infer, given in --val_dataset order (repeat --meta, or concatenate: '
                        'cat heldout/mcq.jsonl heldout/grounded_report.jsonl > meta.jsonl); or one side jsonl '
                        '{"index": row number, "task", "answer", "category", "positives": [ids], "negatives": '
                        '[ids], "target_absent": bool} as the TSV converter writes. A result row whose user '
                        'prompt or image file name differs from its FundusGen meta row is an error')
    parser.add_argument('--tsv', help='benchmark TSV (GMAI-MMBench schema) to find MCQ answers/categories '
                        'of rows without --meta')
    parser.add_argument('--judge', choices=('offline', 'openai'), default='offline',
                        help='clinical-consistency judge: offline lexicon (default) or an OpenAI-compatible LLM')
    parser.add_argument('--judge-base-url', help='OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1')
    parser.add_argument('--judge-model', default='gpt-4o', help='judge model name (default gpt-4o, as the paper)')
    parser.add_argument('--judge-api-key', help='judge API key (default $OPENAI_API_KEY, else EMPTY)')
    parser.add_argument('--judge-timeout', type=positive_float, default=60.0, help='seconds per judge request (default 60)')
    parser.add_argument('--judge-max-retries', type=non_negative_int, default=2, help='judge retries per report (default 2)')
    parser.add_argument('--lexicon', help='offline judge lexicon JSON (default: the packaged one)')
    parser.add_argument('--box-space', type=_space, action='append', default=[], metavar='CONVENTION=SPACE',
                        help='space of a box convention, e.g. qwen=grid for Qwen2-VL/Qwen3-VL (defaults: '
                        'internvl=grid qwen=resized json=resized bare=grid); repeatable')
    parser.add_argument('--max-pixels', type=positive_int, help='Qwen max_pixels used at inference (default: $MAX_PIXELS, '
                        'else qwen_vl_utils default)')
    parser.add_argument('--min-pixels', type=positive_int, help='Qwen min_pixels used at inference')
    parser.add_argument('--grid-decode', choices=GRID_DECODE_RULES, default='centre',
                        help='how a 0-999 grid value becomes a pixel: centre of its cell, (v + 0.5) * W / 1000 '
                        '(default), or edge, v / 1000 * W (InternVL\'s own grounding evaluation; use it to compare '
                        'with published InternVL numbers)')
    parser.add_argument('--ap-score', choices=('rank', 'constant'), default='rank',
                        help='score given to text boxes for COCO AP (default rank: 1/(1+k) for the k-th box)')
    parser.add_argument('--max-samples', type=non_negative_int, default=50, help='rows shown in report.html (default 50)')
    return parser


def _judge(args):
    if args.judge == 'openai':
        if not args.judge_base_url:
            raise ValueError('--judge openai needs --judge-base-url (an OpenAI-compatible endpoint)')
        from fundusexpert_plugin.eval.llm_judge import OpenAIJudge

        return OpenAIJudge(args.judge_base_url, args.judge_model, args.judge_api_key, timeout=args.judge_timeout,
                           max_retries=args.judge_max_retries)
    from fundusexpert_plugin.core.lexicon_judge import LexiconJudge, load_lexicon

    return LexiconJudge(load_lexicon(args.lexicon) if args.lexicon else None)


def run_score(args: argparse.Namespace) -> int:
    """Run ``fundusexpert eval score``; prints the notes and the files written; returns 0.

    Raises:
        FileNotFoundError: a missing result, meta or TSV file.
        FundusDataError / ValueError: an unreadable line or a field of the wrong type (a result row's
            ``response`` that is not a string, ``objects``, a box ...; file, line and field named), a meta
            record whose index is repeated or is no result row, whose MCQ answer is not one of the row's
            options, or whose positives/negatives hold a label the offline judge cannot read
            (:func:`report.check_meta`), a result row whose user prompt or image
            file name differs from its FundusGen meta row (:func:`results.check_meta_alignment`), or
            ``--judge openai`` without ``--judge-base-url``.
    """
    from fundusexpert_plugin.eval.mcq_tsv import read_tsv, tsv_matcher
    from fundusexpert_plugin.eval.report import EvalOptions, evaluate_rows, write_outputs
    from fundusexpert_plugin.eval.results import check_meta_alignment, load_meta, read_results

    rows = read_results(args.result)
    meta = load_meta(args.meta, n_rows=len(rows)) if args.meta else {}
    check_meta_alignment(rows, meta, args.result)
    items = read_tsv(args.tsv) if args.tsv else None
    tsv_match = tsv_matcher(items) if items else None
    options = EvalOptions(spaces=dict(args.box_space), min_pixels=args.min_pixels, max_pixels=args.max_pixels,
                          ap_score_mode=args.ap_score, grid_decode=args.grid_decode,
                          categories=[item.category for item in items] if items else None,
                          max_html_samples=args.max_samples)
    judge = _judge(args) if any('positives' in m for m in meta.values()) else None
    metrics, samples = evaluate_rows(rows, meta, tsv_match=tsv_match, judge=judge, options=options)
    paths = write_outputs(args.out, metrics, samples, max_html_samples=args.max_samples)
    for note in metrics['notes']:
        print(f'note: {note}')
    print(f"scored {metrics['n_rows']} rows {metrics['tasks']}; wrote {', '.join(paths.values())}")
    return 0


def add_tsv_rows_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of the TSV -> swift rows converter."""
    parser.add_argument('--tsv', required=True, help='GMAI-MMBench / Fundus-MMBench TSV')
    parser.add_argument('--out', required=True, help='rows jsonl; <stem>.meta.jsonl is written beside it')
    parser.add_argument('--image-dir', help='where base64 images are decoded (default <out dir>/images)')
    parser.add_argument('--system', help='optional system message (default: the model\'s own)')
    return parser


def run_tsv_rows(args: argparse.Namespace) -> int:
    """Run ``fundusexpert eval mcq-rows``: TSV -> swift rows jsonl + ``.meta.jsonl``; returns 0."""
    from fundusexpert_plugin.eval.mcq_tsv import tsv_to_swift_rows

    rows, meta = tsv_to_swift_rows(args.tsv, args.out, image_dir=args.image_dir, system=args.system)
    print(f'wrote {rows} and {meta}')
    return 0


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of the FundusGen MCQ -> TSV exporter."""
    parser.add_argument('--rows', required=True, help='FundusGen swift rows jsonl (exit 1, nothing written, when it '
                        'holds no MCQ item)')
    parser.add_argument('--out', required=True, help='TSV for VLMEvalKit (custom MCQ dataset); a name containing '
                        '"mmbench" makes VLMEvalKit use circular evaluation, so prefer e.g. FundusGen_MCQ.tsv')
    parser.add_argument('--embed-images', action='store_true',
                        help='add a base64 image column: each image re-encoded from its pixels as a fresh JPEG '
                        '(quality 95, upright), so no EXIF/GPS/XMP/comment of the source file is embedded')
    parser.add_argument('--box-convention', choices=('grid', 'px'), default='grid',
                        help='how a region question writes its box: grid = [x1, y1, x2, y2] on the 0-999 grid of '
                        'the whole image (default, as the paper\'s benchmark), px = original-image pixels')
    return parser


def run_export(args: argparse.Namespace) -> int:
    """Run ``fundusexpert eval mcq-export``: FundusGen MCQ rows -> VLMEvalKit TSV.

    Returns:
        0; 1 when the rows hold no MCQ item (nothing is written, the reason is printed on stderr).

    Raises:
        FundusDataError: a field of the wrong type, or an MCQ row's image is missing (file:line and
            field or path named).
    """
    from fundusexpert_plugin.eval.mcq_tsv import export_fundusgen_mcq

    n, skipped = export_fundusgen_mcq(args.rows, args.out, embed_images=args.embed_images,
                                      box_convention=args.box_convention)
    if n == 0:
        print(f'fundusexpert: nothing to write: {args.rows} has no MCQ item ({skipped} rows, none with lettered '
              f'options and a letter answer); {args.out} not written', file=sys.stderr)
        return 1
    print(f'exported {n} MCQ items to {args.out} ({skipped} rows were not MCQ items)')
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verbs of ``fundusexpert eval``."""
    verbs = add_verbs(parser, 'eval_command')
    add_command(verbs, 'score', 'score a swift infer result jsonl (MCQ, grounding, clinical consistency)',
                add_score_arguments, run_score)
    add_command(verbs, 'mcq-rows', 'GMAI-MMBench / Fundus-MMBench TSV -> swift rows + meta',
                add_tsv_rows_arguments, run_tsv_rows)
    add_command(verbs, 'mcq-export', 'FundusGen MCQ rows -> TSV for VLMEvalKit', add_export_arguments, run_export)
