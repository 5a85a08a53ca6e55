"""Self-contained HTML report and the MCQ per-category chart (matplotlib Agg, Pillow).

The page embeds everything as base64 (no external file or network): a metrics summary, the
per-category accuracy chart, and one card per sample row with a thumbnail on which predicted boxes
are drawn in red and reference boxes in green (pixel boxes scaled to the thumbnail; a malformed
predicted box, ``pred_faults`` of the sample, is not drawn but counted on the card), the
response, the reference and the row's scores (MCQ hit, consistency Score/Total and statuses). The
summary lists grounding rows without a reference box (``grounding_absent``: target stated absent, so
every box drawn is a false alarm; ``grounding_no_reference``) beside the grounding metrics.
"""
from __future__ import annotations

import base64
import html
import json
from typing import Optional, Sequence

PRED_COLOUR = (220, 30, 30)   # red: predicted boxes
GT_COLOUR = (30, 170, 60)     # green: reference boxes
THUMB_PX = 360                # longest side of a thumbnail, pixels


def plot_mcq_categories(mcq_metrics: dict, path: str) -> str:
    """Bar chart of strict and lenient accuracy per category (PNG at ``path``)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    cats = list(mcq_metrics['strict']['per_category'])
    strict = [mcq_metrics['strict']['per_category'][c] for c in cats]
    lenient = [mcq_metrics['lenient']['per_category'][c] for c in cats]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(cats) + 2), 4.5))
    xs = range(len(cats))
    ax.bar([x - 0.2 for x in xs], strict, width=0.4, label='strict (paper: first character)')
    ax.bar([x + 0.2 for x in xs], lenient, width=0.4, label='lenient (ours)')
    ax.set_xticks(list(xs))
    ax.set_xticklabels(cats, rotation=60, ha='right', fontsize=8)
    ax.set_ylim(0, 1.0)
    ax.set_ylabel('accuracy')
    ax.set_title(f"MCQ accuracy per category\n(n={mcq_metrics['n']}; overall strict "
                 f"{mcq_metrics['strict']['overall']}, lenient {mcq_metrics['lenient']['overall']})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    from fundusexpert_plugin.core.images import save_figure
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def thumbnail_data_uri(path: str, pred: Sequence = (), gt: Sequence = (), size: int = THUMB_PX) -> Optional[str]:
    """JPEG data URI of the image with boxes drawn, or ``None`` when the image cannot be read.

    Args:
        path: image file.
        pred, gt: ``[[label, [x1, y1, x2, y2]], ...]`` in original-image pixels.
        size: longest side of the thumbnail in pixels.
    """
    from PIL import Image, ImageDraw

    from fundusexpert_plugin.core.images import encode_jpeg, load_image

    try:
        loaded = load_image(path, max_side=size)
    except (OSError, ValueError):  # ImageSkip is a ValueError
        return None
    scale = loaded.scale[0]
    thumb = Image.fromarray(loaded.rgb)
    draw = ImageDraw.Draw(thumb)
    for boxes, colour in ((gt, GT_COLOUR), (pred, PRED_COLOUR)):
        for label, box in boxes:
            x1, y1, x2, y2 = (v * scale for v in box)
            draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
            if label:
                draw.text((x1 + 2, max(0, y1 - 11)), str(label), fill=colour)
    return 'data:image/jpeg;base64,' + base64.b64encode(encode_jpeg(thumb, quality=85)).decode('ascii')


def _png_uri(path: Optional[str]) -> Optional[str]:
    if not path:
        return None
    with open(path, 'rb') as f:
        return 'data:image/png;base64,' + base64.b64encode(f.read()).decode('ascii')


def _esc(value) -> str:
    return html.escape('' if value is None else str(value))


def _card(rec: dict) -> str:
    faults = rec.get('pred_faults') or [''] * len(rec.get('pred', []))
    drawn = [box for box, fault in zip(rec.get('pred', []), faults) if not fault]   # a malformed box is not drawn
    img = thumbnail_data_uri(rec['image'], drawn, rec.get('gt', [])) if rec.get('image') else None
    parts = [f"<div class='card'><h3>#{rec['index']} &middot; {_esc(rec['task'])}</h3>"]
    parts.append(f"<img src='{img}' alt='sample {rec['index']}'>" if img else
                 f"<p class='note'>image not available: {_esc(rec.get('image'))}</p>")
    if 'gt' in rec:
        parts.append(f"<p><span class='gt'>reference {len(rec['gt'])}</span> &middot; "
                     f"<span class='pred'>predicted {len(rec['pred'])}</span>"
                     + (f" ({sum(bool(f) for f in faults)} malformed, not drawn: "
                        f"{_esc(', '.join(f for f in faults if f))})" if any(faults) else '') + '</p>')
    if rec.get('absent'):
        parts.append("<p class='note'>" + ('target stated absent: any box is a false alarm'
                                           if rec['absent'] == 'stated_absent' else 'no reference box')
                     + ' (not in acc50/AP)</p>')
    if 'mcq' in rec:
        m = rec['mcq']
        parts.append(f"<p>answer <b>{_esc(m['answer'])}</b> ({_esc(m['category'])}); strict "
                     f"{_esc(m['strict']) or '&empty;'} {'&#10003;' if m['strict_hit'] else '&#10007;'}, lenient "
                     f"{_esc(m['lenient']) or '&empty;'} {'&#10003;' if m['lenient_hit'] else '&#10007;'}</p>")
    if 'consistency' in rec:
        c = rec['consistency']
        score = f"error: {_esc(c['error'])}" if c['error'] else f"{c['score']}/{c['total']}"
        statuses = ', '.join(f'{_esc(k)}: {_esc(v)}' for k, v in c['statuses'].items() if v != 'not_mentioned')
        contradicted = ', '.join(_esc(f) for f in c.get('contradictions') or [])
        parts.append(f"<p>clinical consistency <b>{score}</b></p><p class='note'>{statuses}</p>"
                     + (f"<p class='note'>contradictions (not credited): {contradicted}</p>" if contradicted else ''))
    parts.append(f"<details open><summary>response</summary><pre>{_esc(rec.get('response'))}</pre></details>")
    parts.append(f"<details><summary>reference</summary><pre>{_esc(rec.get('labels'))}</pre></details></div>")
    return ''.join(parts)


_STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}
.grid{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ccc;border-radius:6px;padding:8px;width:380px}
.card img{max-width:100%}pre{white-space:pre-wrap;font-size:12px;background:#f6f6f6;padding:4px}
.gt{color:rgb(30,170,60);font-weight:bold}.pred{color:rgb(220,30,30);font-weight:bold}.note{color:#666;font-size:12px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}"""


def _summary(metrics: dict) -> str:
    rows = [('rows', metrics['n_rows']), ('tasks', json.dumps(metrics['tasks']))]
    if metrics.get('mcq'):
        m = metrics['mcq']
        rows += [('MCQ accuracy, strict (paper rule)', m['strict']['overall']),
                 ('MCQ accuracy, lenient (ours)', m['lenient']['overall'])]
    if metrics.get('grounding'):
        g = metrics['grounding']
        rows += [('grounding acc50 (Acc@0.5, one-to-one)', g['acc50']),
                 ('grounding precision50 / recall50 (one-to-one, IoU 0.5)', f"{g['precision50']} / {g['recall50']}"),
                 ('grounding best_match_iou (diagnostic, not one-to-one)', g['best_match_iou']),
                 ('grounding malformed predicted boxes (match nothing): inverted / out of range',
                  f"{g['malformed_by_fault']['inverted']} / {g['malformed_by_fault']['out_of_range']}"),
                 ('grounding coco.ap / coco.ap50', f"{g['coco']['ap']} / {g['coco']['ap50']}")]
    if metrics.get('grounding_responses'):
        r = metrics['grounding_responses']
        rows.append(('grounding responses: rows / with a box read / empty / box tags holding no readable box',
                     f"{r['n_rows']} / {r['n_rows_with_boxes']} / {r['n_empty_responses']} / "
                     f"{r['n_unparsed_box_tags']}"))
    for key, what in (('grounding_absent', 'target stated absent, boxes are false alarms'),
                      ('grounding_no_reference', 'no reference box')):
        if metrics.get(key):
            a = metrics[key]
            rows.append((f'grounding rows not in acc50/AP ({what}): rows / rows with boxes / boxes',
                         f"{a['n_rows']} / {a['n_rows_with_boxes']} / {a['n_boxes']}"))
    if metrics.get('consistency'):
        c = metrics['consistency']
        rows += [('clinical consistency per_report_mean (per-report mean of Score/Total)', c['per_report_mean']),
                 ('clinical consistency pooled (sum(Score) / sum(Total))', c['pooled']),
                 ('consistency contradictions (findings stated present and absent)', c.get('contradictions', 0)),
                 ('consistency judge / failed', f"{c['judge']} / {c['n_failed']}")]
    if metrics.get('answers'):
        a = metrics['answers']
        rows += [('closed answers, exact match (grading, classification, region identification)', a['accuracy'])]
        rows += [(f'{scale}: accuracy / quadratic kappa / unparsed',
                  f"{g['accuracy']} / {g['quadratic_kappa']} / {g['n_unparsed']}") for scale, g in a['grades'].items()]
    body = ''.join(f'<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>' for k, v in rows)
    notes = ''.join(f"<li>{_esc(n)}</li>" for n in metrics.get('notes', []))
    return f"<table>{body}</table>" + (f"<ul class='note'>{notes}</ul>" if notes else '')


def render_html(metrics: dict, samples: Sequence[dict], mcq_png: Optional[str] = None, *,
                max_samples: int = 50) -> str:
    """The whole report page as a string; the first ``max_samples`` rows get a card."""
    chart = _png_uri(mcq_png)
    shown = list(samples)[:max_samples]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>FundusExpert evaluation</title>"
            f"<style>{_STYLE}</style></head><body><h1>FundusExpert evaluation</h1>{_summary(metrics)}"
            + (f"<h2>MCQ per category</h2><img src='{chart}' alt='per-category accuracy'>" if chart else '')
            + f"<h2>Samples ({len(shown)} of {len(samples)})</h2><p class='note'>"
            "<span class='pred'>red</span>: predicted boxes; <span class='gt'>green</span>: reference boxes.</p>"
            f"<div class='grid'>{''.join(_card(r) for r in shown)}</div>"
            f"<h2>metrics.json</h2><pre>{_esc(json.dumps(metrics, indent=1, ensure_ascii=False))}</pre>"
            "</body></html>")
