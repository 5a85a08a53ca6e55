"""Every kind of the odd-input corpus (tests/fixtures/make_corpus.py) through the command-line entry
functions, strict and lenient: converted with size and boxes, skipped and counted, or refused with a
one-line message; never a traceback."""
import importlib.util
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from fundusexpert_plugin.cli import build as build_cli
from fundusexpert_plugin.cli import convert as convert_cli
from fundusexpert_plugin.cli import validate as validate_cli
from fundusexpert_plugin.cli.main import main
from fundusexpert_plugin.core.images import DEFAULT_MAX_PIXELS, set_max_pixels

_spec = importlib.util.spec_from_file_location('make_corpus', Path(__file__).parents[1] / 'fixtures' / 'make_corpus.py')
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)


@pytest.fixture(scope='module')
def kinds(tmp_path_factory):
    return corpus.make(tmp_path_factory.mktemp('odd'))


@pytest.fixture(autouse=True)
def _reset_pixel_limit():
    yield
    set_max_pixels(DEFAULT_MAX_PIXELS)


#: entry module -> its command (the CLI's error policy prints bad input as one line, exit 2)
COMMANDS = {convert_cli: ['data', 'convert'], build_cli: ['data', 'build'], validate_cli: ['data', 'validate']}


def _call(module, argv, capsys):
    rc = main([*COMMANDS[module], *(str(a) for a in argv)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert 'Traceback' not in text
    return rc, out.out, out.err


def _records(path):
    return {r['record_id']: r for r in map(json.loads, path.read_text(encoding='utf-8').splitlines())}


def _format(kind):
    return corpus.FORMAT.get(kind, 'codras')


def _convert_argv(kind, d, out):
    """``data convert`` arguments for the kind's format, writing ``out``."""
    fmt = _format(kind)
    inputs = {'codras': ['--annotations', d / 'annotations.jsonl'],
              'yolo': ['--images', d / 'images', '--labels', d / 'labels'],
              'coco': ['--json', d / 'annotations.json'],
              'box-csv': ['--csv', d / 'boxes.csv']}[fmt]
    provenance = [] if fmt == 'codras' else ['--source-dataset', 'odd inputs']
    return [fmt, *inputs, *provenance, '--out', out, *corpus.EXTRA_ARGS.get(kind, [])]


def _validate_argv(kind, d):
    """``data validate`` arguments for the kind's format."""
    fmt = _format(kind)
    path = {'codras': d / 'annotations.jsonl', 'yolo': d / 'labels', 'coco': d / 'annotations.json',
            'box-csv': d / 'boxes.csv'}[fmt]
    images = ['--images', d / 'images'] if fmt == 'yolo' else []
    return [path, '--format', fmt, *images, *corpus.EXTRA_ARGS.get(kind, [])]


def test_the_corpus_has_forty_kinds_each_with_an_outcome():
    assert len(corpus.KINDS) >= 40 and set(corpus.KINDS) == set(corpus.EXPECTED)
    assert {e['outcome'] for e in corpus.EXPECTED.values()} == {'ok', 'skip_box', 'skip_record', 'warn', 'refused'}
    for fmt in ('yolo', 'coco', 'box-csv'):   # every box format has a control, bad boxes and a missing image
        outcomes = [corpus.EXPECTED[k]['outcome'] for k, f in corpus.FORMAT.items() if f == fmt]
        assert outcomes.count('ok') == 1 and outcomes.count('skip_box') >= 3, fmt
    assert {corpus.EXPECTED[k]['outcome'] for k in ('coco_missing_image_file', 'csv_missing_image')} == {'skip_record'}


@pytest.mark.parametrize('kind', sorted(corpus.KINDS))
def test_convert_strict_and_lenient(kind, kinds, capsys):
    exp, d = corpus.EXPECTED[kind], kinds[kind]
    ctrl, k = corpus.IDS[_format(kind)]
    argv = _convert_argv(kind, d, d / 'records.jsonl')
    rc, out, err = _call(convert_cli, argv, capsys)
    if exp['outcome'] == 'ok':
        assert rc == 0, err
        rec = _records(d / 'records.jsonl')[k]
        assert (rec['width'], rec['height']) == exp['size'] and len(rec['findings']) == exp['boxes']
        assert rec['provenance']['stages'].get('image', '') == exp.get('conversion', '')
        if 'warning' in exp:
            assert re.search(exp['warning'], out)
        return
    assert rc == 2 and len(err.strip().splitlines()) == 1, err             # strict: one line
    assert re.search(exp.get('strict', exp['pattern']), err), err
    rc, out, err = _call(convert_cli, argv + ['--lenient'], capsys)
    if exp['outcome'] == 'refused':
        assert rc == 2 and re.search(exp['pattern'], err), err
        return
    assert rc == 0, err
    records = _records(d / 'records.jsonl')
    if exp['outcome'] == 'skip_record':
        assert sorted(records) == exp.get('kept', [ctrl]) and f'skipped records (1x): {exp["reason"]}' in out, out
        assert re.search(exp['pattern'], out)
    else:
        assert sorted(records) == sorted([ctrl, k]) and len(records[k]['findings']) == exp['boxes']
        assert len(records[ctrl]['findings']) == 2
        if exp['outcome'] == 'skip_box':
            assert f'skipped boxes/items (1x): {exp["reason"]}' in out, out
        assert re.search(exp['pattern'], out)


@pytest.mark.parametrize('kind', sorted(corpus.FORMAT))
def test_other_formats_keep_the_boxes_as_written(kind, kinds, capsys):
    """The control's two boxes and the kind's good box, in pixels, whatever the format."""
    exp, d = corpus.EXPECTED[kind], kinds[kind]
    if exp['outcome'] == 'refused':
        return
    ctrl, k = corpus.IDS[_format(kind)]
    rc, _, err = _call(convert_cli, _convert_argv(kind, d, d / 'boxes.jsonl') + ['--lenient'], capsys)
    assert rc == 0, err
    records = _records(d / 'boxes.jsonl')
    boxes = {rid: [(f['label'], pytest.approx(f['box_px'])) for f in r['findings']] for rid, r in records.items()}
    assert boxes[ctrl] == [('optic_disc', [10, 20, 30, 40]), ('hard_exudates', [50, 10, 90, 60])]
    if exp['outcome'] != 'skip_record':
        assert boxes[k] == [('optic_disc', [10, 20, 30, 40]), ('hard_exudates', [50, 10, 90, 60])][:exp['boxes']]


@pytest.mark.parametrize('kind', sorted(corpus.KINDS))
def test_validate_counts_without_writing(kind, kinds, capsys):
    exp, d = corpus.EXPECTED[kind], kinds[kind]
    rc, out, err = _call(validate_cli, _validate_argv(kind, d), capsys)
    assert not (d / 'validate').exists()
    if exp['outcome'] in ('ok', 'warn'):
        assert rc == 0, out + err
    elif exp['outcome'] == 'refused':
        assert rc == 2 and re.search(exp['pattern'], err)
    else:
        kind_word = 'records' if exp['outcome'] == 'skip_record' else 'boxes/items'
        assert rc == 1 and f'would skip 1 {kind_word}: {exp["reason"]}' in out, out


@pytest.mark.parametrize('kind', sorted(k for k, e in corpus.EXPECTED.items() if e['outcome'] == 'ok'))
def test_build_from_converted_records(kind, kinds, capsys, tmp_path):
    d = kinds[kind]
    assert _call(convert_cli, _convert_argv(kind, d, d / 'rec.jsonl'), capsys)[0] == 0
    rc, out, err = _call(build_cli, ['--records', d / 'rec.jsonl', '--out', tmp_path / 'fg', '--languages', 'en',
                                     '--num-proc', '1'], capsys)
    assert rc == 0, err
    summary = json.loads((tmp_path / 'fg' / 'build_summary.json').read_text())
    assert summary['records_used'] == 2 and summary['skipped'] == []
    rows = [json.loads(x) for x in (tmp_path / 'fg' / 'region_detection.jsonl').read_text().splitlines()]
    row_image = {r['record_id']: r['images'][0] for r in rows}[corpus.IDS[_format(kind)][1]]
    converted = corpus.EXPECTED[kind].get('conversion')
    assert row_image.startswith('images/') == bool(converted)        # converted photos: an upright copy
    with Image.open(tmp_path / 'fg' / row_image) as im:
        assert im.size == (100, 80)


def _bad_records(kinds, tmp_path):
    """A records file: the control record, then one record per unusable-image kind."""
    ctrl = _records(kinds['control_jpeg'] / 'records.jsonl')['ctrl']
    lines = [dict(ctrl, image=str(Path(ctrl['image'])))]
    for kind in ('missing_image', 'html_named_jpg', 'truncated_jpeg', 'directory_as_image', 'zero_byte_image'):
        name = 'nope.jpg' if kind == 'missing_image' else 'k.jpg'
        lines.append(dict(ctrl, record_id=kind, image=f'../{kind}/images/{name}'))
    lines.append(dict(ctrl, record_id='escape', image='../../../../etc/passwd'))
    lines.append(dict(ctrl, record_id='big', width=120))
    path = kinds['control_jpeg'].parent / '_build' / 'recs.jsonl'
    path.parent.mkdir()
    path.write_text('\n'.join(json.dumps(x) for x in lines) + '\n')
    return path, kinds['control_jpeg'].parent


def test_build_skips_unusable_images_by_reason_and_strict_names_the_record(kinds, capsys, tmp_path):
    _call(convert_cli, ['codras', '--annotations', kinds['control_jpeg'] / 'annotations.jsonl',
                        '--out', kinds['control_jpeg'] / 'records.jsonl', '--absolute-paths'], capsys)
    path, root = _bad_records(kinds, tmp_path)
    argv = ['--records', path, '--out', tmp_path / 'fg', '--languages', 'en', '--image-root', root, '--num-proc', '2']
    rc, out, err = _call(build_cli, argv, capsys)
    assert rc == 2 and re.fullmatch(r"fundusexpert: error: .*recs\.jsonl:2: record 'missing_image': image: image not found: "
                                    r".*missing_image/images/nope\.jpg\n",
                                    err), err
    rc, out, err = _call(build_cli, argv + ['--lenient'], capsys)
    assert rc == 0, err
    summary = json.loads((tmp_path / 'fg' / 'build_summary.json').read_text())
    assert summary['records_used'] == 1
    assert summary['skipped_by_reason'] == {'image_missing': 1, 'image_path_refused': 1, 'image_unreadable': 4,
                                            'size_mismatch': 1}


def test_build_of_empty_or_all_bad_records_is_an_error_even_lenient(tmp_path, capsys):
    (tmp_path / 'empty.jsonl').write_bytes(b'')
    rc, _, err = _call(build_cli, ['--records', tmp_path / 'empty.jsonl', '--out', tmp_path / 'o', '--lenient'], capsys)
    assert rc == 2 and 'empty.jsonl: read 0 lines, kept no record; the file has no record line' in err
    (tmp_path / 'bad.jsonl').write_text('{broken\n[1]\n')
    rc, _, err = _call(build_cli, ['--records', tmp_path / 'bad.jsonl', '--out', tmp_path / 'o', '--lenient'], capsys)
    assert rc == 2 and re.search(r"bad\.jsonl: read 2 lines, kept no record; skipped \{'invalid_json': 1, "
                                 r"'not_an_object': 1\}", err), err


def test_duplicate_ids_in_build_name_the_file_and_both_lines(kinds, tmp_path, capsys):
    d = kinds['control_jpeg']
    _call(convert_cli, ['codras', '--annotations', d / 'annotations.jsonl', '--out', d / 'r2.jsonl'], capsys)
    line = (d / 'r2.jsonl').read_text().splitlines()[0]
    (d / 'dup.jsonl').write_text(f'{line}\n{line}\n')
    rc, _, err = _call(build_cli, ['--records', d / 'dup.jsonl', '--out', tmp_path / 'o'], capsys)
    assert rc == 2 and re.search(r"dup\.jsonl:2: record_id 'ctrl' already given at line 1 \(.*dup\.jsonl:1\)", err)
