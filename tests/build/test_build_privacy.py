"""No patient text leaves: every image the builder writes is a fresh metadata-free image; an
EXIF-rotated photo builds the same rows as its upright copy."""
import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image

from fundusexpert_plugin.build import build_sample
from fundusexpert_plugin.cli import build as build_cli
from fundusexpert_plugin.cli import convert as convert_cli

_spec = importlib.util.spec_from_file_location('make_corpus', Path(__file__).parents[1] / 'fixtures' / 'make_corpus.py')
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)
IMAGE_METADATA = ('exif', 'comment', 'xmp', 'XML:com.adobe.xmp', 'icc_profile', 'photoshop', 'Comment')


def _run(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args([str(a) for a in argv]))


def _build_kind(folder: Path, out: Path) -> Path:
    assert _run(convert_cli, ['codras', '--annotations', folder / 'annotations.jsonl', '--out', folder / 'r.jsonl']) == 0
    assert _run(build_cli, ['--records', folder / 'r.jsonl', '--out', out, '--num-proc', '1']) == 0
    return out


def test_no_written_file_holds_the_fake_name_and_no_image_has_metadata(tmp_path, capsys):
    kinds = corpus.make(tmp_path / 'corpus')
    with Image.open(kinds['control_jpeg'] / 'images' / 'ctrl.jpg') as src:   # the input really carries it
        assert corpus.FAKE_NAME.encode() in src.info['comment'] and src.getexif()[0x010E] == corpus.FAKE_NAME
    outs = [tmp_path / 'sample']
    build_sample(outs[0], languages=['en'])
    for kind in ('control_jpeg', 'png_text_chunk', 'exif_orientation_6', 'rgba_transparent_border'):
        outs.append(_build_kind(kinds[kind], tmp_path / f'out_{kind}'))
    images = 0
    for out in outs:
        for path in out.rglob('*'):
            if not path.is_file():
                continue
            assert corpus.FAKE_NAME.encode() not in path.read_bytes(), path
            if path.suffix in ('.jpg', '.png'):
                images += 1
                with Image.open(path) as im:
                    assert not im.getexif(), path
                    assert not set(im.info) & set(IMAGE_METADATA), (path, im.info.keys())
                    assert not getattr(im, 'text', {}), path
    assert images >= 40          # marked copies of the sample and of the corpus, upright copies


def test_exif_rotated_photo_builds_the_same_rows_as_its_upright_copy(tmp_path, capsys):
    kinds = corpus.make(tmp_path / 'corpus')
    upright = _build_kind(kinds['control_jpeg'], tmp_path / 'upright')
    rotated = _build_kind(kinds['exif_orientation_6'], tmp_path / 'rotated')
    for task in sorted(p.name for p in upright.glob('*.jsonl')):
        a = [json.loads(x) for x in (upright / task).read_text().splitlines()]
        b = [json.loads(x) for x in (rotated / task).read_text().splitlines()]
        assert [{k: v for k, v in r.items() if k != 'images'} for r in a] == \
               [{k: v for k, v in r.items() if k != 'images'} for r in b], task
    row = next(json.loads(x) for x in (rotated / 'region_detection.jsonl').read_text().splitlines()
               if json.loads(x)['record_id'] == 'k')
    assert row['images'] == ['images/k.png']                # the upright copy the model sees
    with Image.open(upright / 'marked' / 'k_000.jpg') as m1, Image.open(rotated / 'marked' / 'k_000.jpg') as m2:
        diff = np.abs(np.asarray(m1, np.int16) - np.asarray(m2, np.int16))
        assert m1.size == m2.size == (100, 80) and diff.mean() < 4   # same picture, JPEG noise only


def test_copy_images_points_every_row_at_a_fresh_metadata_free_copy(tmp_path, capsys):
    """The input JPEG carries EXIF (with the fake name) and a comment; with --copy-images no row points at
    it and the copy holds the same pixels (lossless PNG of the decoded JPEG) and no metadata."""
    kinds = corpus.make(tmp_path / 'corpus')
    folder = kinds['control_jpeg']
    assert _run(convert_cli, ['codras', '--annotations', folder / 'annotations.jsonl', '--out', folder / 'r.jsonl']) == 0
    plain, copied = tmp_path / 'plain', tmp_path / 'copied'
    assert _run(build_cli, ['--records', folder / 'r.jsonl', '--out', plain, '--num-proc', '1']) == 0
    assert _run(build_cli, ['--records', folder / 'r.jsonl', '--out', copied, '--num-proc', '1', '--copy-images']) == 0
    original = (folder / 'images' / 'ctrl.jpg').resolve()

    def first_images(out):
        rows = [json.loads(line) for p in sorted(out.glob('*.jsonl')) for line in p.read_text().splitlines()]
        return {(out / r['images'][0]).resolve() for r in rows if r.get('images')}
    assert original in first_images(plain)                        # default: the original in place
    copies = first_images(copied)
    assert original not in copies and copies
    unmarked = {p.name: p for p in copies if p.parent == (copied / 'images').resolve()}
    originals = sorted(p.stem for p in (folder / 'images').iterdir())
    assert sorted(unmarked) == [f'{stem}.png' for stem in originals]       # one fresh copy per photograph
    for path in unmarked.values():
        with Image.open(path) as im:
            assert not im.getexif() and not set(im.info) & set(IMAGE_METADATA) and not getattr(im, 'text', {})
        assert corpus.FAKE_NAME.encode() not in path.read_bytes()
    with Image.open(unmarked['ctrl.png']) as im, Image.open(original) as src:
        assert np.array_equal(np.asarray(im), np.asarray(src.convert('RGB')))
