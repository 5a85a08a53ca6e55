"""CODRAS lines: licence and attribution from each line's own source dataset."""
import json

from PIL import Image

from fundusexpert_plugin.sources.codras import codras_provenance, read_codras


def test_licence_follows_each_lines_source(tmp_path):
    (tmp_path / 'images').mkdir()
    for name in ('a', 'b', 'c', 'd'):
        Image.new('RGB', (100, 80)).save(tmp_path / 'images' / f'{name}.png')
    box = [{'label': 'optic_disc', 'bbox_xyxy': [60, 20, 90, 50]}]
    lines = [{'image': 'images/a.png', 'width': 100, 'height': 80, 'annotations': box,
              'source_dataset': 'IDRiD (grading/localization set, 516 imgs; exact IDRiD id not given by CODRAS)'},
             {'image': 'images/b.png', 'width': 100, 'height': 80, 'annotations': box, 'source_dataset': 'DIARETDB1'},
             {'image': 'images/c.png', 'width': 100, 'height': 80, 'annotations': box},          # no source
             {'image': 'images/d.png', 'width': 100, 'height': 80, 'annotations': box, 'source_dataset': 'Messidor'}]
    path = tmp_path / 'annotations.jsonl'
    path.write_text(''.join(json.dumps(line) + '\n' for line in lines))
    a, b, c, d = (r.provenance for r in read_codras(path))
    assert a.licence.startswith('images: IDRiD, CC BY 4.0') and 'DIARETDB1' not in a.licence
    assert b.licence.startswith('images: DIARETDB1, research use only') and 'IDRiD' not in b.licence
    assert b.attribution == 'DIARETDB1 (Kauppi et al. 2007); CODRAS boxes (von Csefalvay 2019)'
    for p in (a, b):
        assert p.licence.endswith('boxes: CODRAS, (c) Chris von Csefalvay 2019, CC BY-SA 4.0')
    assert (c.licence, c.source_dataset) == ('unknown', 'unknown (CODRAS boxes)')
    assert (d.licence, d.source_dataset) == ('unknown', 'Messidor')
    assert 'IDRiD' not in c.attribution and 'IDRiD' not in d.attribution


def test_a_line_naming_two_sources_is_unknown():
    assert codras_provenance('IDRiD or DIARETDB1')[1] == 'unknown'
    assert codras_provenance('diaretdb1 (lesion set)')[1].startswith('images: DIARETDB1')
