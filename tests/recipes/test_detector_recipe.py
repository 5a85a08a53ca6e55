"""examples/recipes/detector_ddr_lesions.sh runs end to end: DDR masks -> records -> train-detector (CPU, 1 step).

The GPU settings (1536 px, batch 8, 12,000 iterations) are overridden by the extra flags the launcher passes on,
so the same two commands the recipe runs on a GPU machine run here on a DDR-layout folder made from four photos
of the bundled sample (real IDRiD photographs, downscaled; lesion masks filled from their CODRAS boxes).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from fundusexpert_plugin.sample import sample_records

REPO = Path(__file__).resolve().parents[2]
DDR_CODES = {'hard_exudates': 'EX', 'haemorrhages': 'HE'}     # the sample has no MA / SE boxes: empty masks


def _ddr_layout(root: Path, split: str, records, width=640) -> None:
    """``lesion_segmentation/<split>/image/<id>.jpg`` and ``label/{EX,HE,MA,SE}/<id>.tif`` as DDR lays them out."""
    base = root / 'lesion_segmentation' / split
    for rec in records:
        scale = width / rec.width
        size = (width, round(rec.height * scale))
        (base / 'image').mkdir(parents=True, exist_ok=True)
        with Image.open(rec.image) as im:
            im.convert('RGB').resize(size).save(base / 'image' / f'{rec.record_id}.jpg')
        masks = {code: Image.new('L', size) for code in ('EX', 'HE', 'MA', 'SE')}
        for f in rec.findings:
            if f.label in DDR_CODES:
                ImageDraw.Draw(masks[DDR_CODES[f.label]]).rectangle([v * scale for v in f.box_px], fill=255)
        for code, mask in masks.items():
            (base / 'label' / code).mkdir(parents=True, exist_ok=True)
            mask.save(base / 'label' / code / f'{rec.record_id}.tif')


def _components(mask_path: Path) -> list:
    """Boxes ``[x1, y1, x2, y2]`` (pixels, x2/y2 exclusive) of the mask's 8-connected components whose
    last-pixel area ``(w - 1) * (h - 1)`` is > 0 (the converter's area rule), sorted."""
    import numpy as np
    from scipy import ndimage
    mask = np.asarray(Image.open(mask_path)) > 0
    labelled, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    boxes = [[float(sx.start), float(sy.start), float(sx.stop), float(sy.stop)]
             for sy, sx in ndimage.find_objects(labelled)]
    return sorted(b for b in boxes if (b[2] - b[0] - 1) * (b[3] - b[1] - 1) > 0)


@pytest.mark.slow
def test_ddr_lesion_recipe_converts_and_trains(tmp_path):
    ddr, work = tmp_path / 'DDR', tmp_path / 'work'
    _ddr_layout(ddr, 'train', sample_records('train')[:2])
    _ddr_layout(ddr, 'valid', sample_records('heldout')[:2])       # 0005, 0014
    env = {**os.environ, 'DDR': str(ddr), 'WORK': str(work),
           'PATH': f'{Path(sys.executable).parent}{os.pathsep}{os.environ["PATH"]}'}
    env.pop('FUNDUS_RECIPE_DRY_RUN', None)
    proc = subprocess.run(['bash', str(REPO / 'examples' / 'recipes' / 'detector_ddr_lesions.sh'),
                           '--max-iters', '1', '--img-scale', '256', '--batch-size', '2'],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    valid = [json.loads(line) for line in (work / 'records_valid.jsonl').read_text().splitlines()]
    assert [r['record_id'] for r in valid] == ['0005', '0014']
    for rec in valid:      # one box per 8-connected lesion component, as scipy labels the masks
        valid_dir = ddr / 'lesion_segmentation' / 'valid' / 'label'
        for code, label in (('EX', 'hard_exudates'), ('HE', 'haemorrhages')):
            expected = _components(valid_dir / code / f"{rec['record_id']}.tif")
            assert sorted(f['box_px'] for f in rec['findings'] if f['label'] == label) == expected
    # the records hold absolute paths under the DDR folder, which train-detector takes as its dataset folder
    assert all(r['image'] == str(ddr / 'lesion_segmentation' / 'valid' / 'image' / f"{r['record_id']}.jpg")
               for r in valid)
    lines = proc.stdout.splitlines()                                # convert's lines, mmengine's log, the summary
    assert [line for line in lines if 'records written' in line] == [
        f'{work}/records_train.jsonl: 2 records written; 0 bad items skipped',
        f'{work}/records_valid.jsonl: 2 records written; 0 bad items skipped']
    summary = json.loads('\n'.join(lines[max(i for i, line in enumerate(lines) if line == '{'):]))
    assert summary['classes'] == ['hard_exudates', 'haemorrhages', 'microaneurysms', 'cotton_wool_spots']
    assert (summary['n_train_images'], summary['n_val_images']) == (2, 2)
    metrics = json.loads((work / 'metrics.json').read_text())       # where the recipe says AP is written
    assert metrics == summary['metrics'] and list(metrics['AP50_per_class']) == summary['classes']
    # every mask cluster the converter turned into a box is a validation ground-truth box
    assert metrics['n_gt_boxes'] == sum(len(r['findings']) for r in valid) > 0
    assert 0.0 <= metrics['bbox_mAP'] <= 1.0
    from mmengine.config import Config
    merged = Config.fromfile(work / 'detector_rtmdet-s_ddr-lesions.py')
    assert (merged.model.backbone.widen_factor, merged.model.bbox_head.num_classes) == (0.5, 4)  # RTMDet-s
    assert (merged.train_cfg.max_iters, tuple(merged.img_scale)) == (1, (256, 256))    # the extra flags win
