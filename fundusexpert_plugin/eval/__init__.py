"""Evaluation after ``swift infer``: everything scores the result jsonl, so any model swift serves works.

Modules (importing this package imports none of them, nor swift):
    parse          boxes out of model text (InternVL, Qwen, JSON, bare) -> original-image pixels
    results        result rows: task kind, image, reference boxes from ``objects``, predicted boxes
    mcq            paper prompt, strict first-letter and lenient scoring, per-category accuracy
    mcq_tsv        GMAI-MMBench TSV <-> swift rows, FundusGen MCQ -> TSV, evalscope general_vmcq
    grounding      one-to-one Acc@0.5, precision/recall@0.5, best-match IoU (diagnostic), COCO AP (core.coco_eval)
    consistency    clinical consistency Score/Total, judge interface, aggregates
    lexicon_judge  offline judge (lexicon + negation scope, EN/ZH); data: consistency_lexicon.json
    llm_judge      judge through an OpenAI-compatible endpoint
    report         score all rows, write metrics.json / samples.jsonl / PNG / report.html
    report_html    the self-contained HTML page and the per-category chart

"""
