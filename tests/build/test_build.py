"""The builder on real sample images: values checked by hand against annotations.jsonl."""
import json

import pytest
from PIL import Image

from fundusexpert_plugin.build import build_fundusgen, build_sample
from fundusexpert_plugin.core.record import FundusDataError
from fundusexpert_plugin.sample import SAMPLE_DIR


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp('fg')
    return out, build_sample(out)


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding='utf-8').splitlines()]


def test_sample_split_counts(built):
    out, summaries = built
    assert summaries['train'].records_used == 8 and summaries['heldout'].records_used == 4
    # region detection, per image and language: every class present or known absent (3 CODRAS classes),
    # plus the fovea on the 5 train photos with an IDRiD fovea centre (0001, 0004, 0006, 0008, 0013)
    assert summaries['train'].rows_per_task['region_detection'] == 8 * 3 * 2 + 5 * 2
    assert summaries['train'].rows_per_task['grading'] == 0       # no grade in the sample, none invented
    assert summaries['train'].rows_per_task['diagnosis'] == 16
    assert (out / 'LICENSE.md').read_text().startswith('# Bundled sample')
    # every sample line names IDRiD as its source: one licence, counted per record built
    (licence,) = summaries['train'].licences
    assert summaries['train'].licences[licence] == 8 and summaries['heldout'].licences == {licence: 4}
    assert licence.startswith('images: IDRiD, CC BY 4.0') and 'CC BY-SA 4.0' in licence
    assert json.loads((out / 'train' / 'build_summary.json').read_text())['licences'] == {licence: 8}


def test_region_detection_row_of_image_0003(built):
    out, _ = built
    rows = [r for r in _rows(out / 'train' / 'region_detection.jsonl') if r['record_id'] == '0003' and r['lang'] == 'en']
    disc = next(r for r in rows if r['target'] == 'optic_disc')
    # annotations.jsonl: optic disc of 0003 = upstream (665, 958, 1264, 1628) / 4
    assert disc['objects'] == {'ref': ['optic disc'], 'bbox': [[166.25, 239.5, 316.0, 407.0]], 'bbox_type': 'real'}
    assert disc['messages'][1]['content'] == '<ref-object><bbox>'
    exudates = next(r for r in rows if r['target'] == 'hard_exudates')
    # 21 exudate boxes in 0003, all of them (an "all" prompt gets every box), largest first:
    # upstream (2397, 617, 3118, 1518) / 4
    assert len(exudates['objects']['bbox']) == 21
    assert exudates['n_boxes'] == {'hard_exudates': 21} and exudates['box_cap'] is None
    assert exudates['objects']['bbox'][0] == [599.25, 154.25, 779.5, 379.5]
    assert (out / 'train' / disc['images'][0]).resolve() == (SAMPLE_DIR / 'images' / '0003.jpg').resolve()


def test_absent_target_answer_and_region_identification(built):
    out, _ = built
    rows = _rows(out / 'train' / 'region_detection.jsonl')
    absent = next(r for r in rows if r['record_id'] == '0006' and r['target'] == 'hard_exudates' and r['lang'] == 'en')
    assert absent['messages'][1]['content'] == 'The image shows no hard exudates.'
    assert 'objects' not in absent
    ident = _rows(out / 'train' / 'region_identification.jsonl')
    row = next(r for r in ident if r['record_id'] == '0006')   # only the optic disc in 0006
    assert row['messages'][1]['content'] in ('Optic disc.', '视盘。')
    marked = Image.open(out / 'train' / row['images'][0]).convert('RGB')
    x1, y1 = (round(v) for v in row['marked_box_px'][:2])
    r, g, b = marked.getpixel((x1, y1 + 10))      # on the drawn outline (JPEG: approximately red)
    assert marked.size == (1072, 712) and r > 180 and g < 80 and b < 80


def test_mcq_answer_letter_points_at_the_true_class(built):
    out, _ = built
    for row in _rows(out / 'train' / 'mcq.jsonl'):
        letter = row['messages'][1]['content']
        options = row['options']
        assert letter in 'ABCD'[:len(options)]
        assert f'{letter}. {options["ABCD".index(letter)]}' in row['messages'][0]['content']
        assert row['target'] not in row['negatives']


def test_build_is_deterministic(tmp_path, built):
    out, _ = built
    build_sample(tmp_path)
    for task_file in (out / 'train').glob('*.jsonl'):
        assert (tmp_path / 'train' / task_file.name).read_bytes() == task_file.read_bytes()


def test_missing_image_strict_and_lenient(tmp_path, make_record):
    Image.new('RGB', (1000, 800)).save(tmp_path / 'ok.jpg')
    good = make_record([('optic_disc', (100, 100, 200, 200))], image='ok.jpg', record_id='good')
    missing = make_record(image='nope.jpg', record_id='gone')
    with pytest.raises(FundusDataError, match=r"record 'gone': image: image not found: .*nope\.jpg"):
        build_fundusgen([good, missing], tmp_path / 'out', image_dir=tmp_path)
    summary = build_fundusgen([good, missing], tmp_path / 'out', image_dir=tmp_path, lenient=True)
    assert summary.records_used == 1 and len(summary.skipped) == 1
    saved = json.loads((tmp_path / 'out' / 'build_summary.json').read_text())
    assert saved['skipped'] == summary.skipped


def test_image_size_mismatch_is_an_error(tmp_path, make_record):
    Image.new('RGB', (640, 480)).save(tmp_path / 'small.jpg')
    rec = make_record(image='small.jpg', record_id='s')
    with pytest.raises(FundusDataError, match=r"record 's': width/height = 1000x800 but .*small\.jpg is 640x480"):
        build_fundusgen([rec], tmp_path / 'out', image_dir=tmp_path)


def test_cli_lenient_build_reports_unreadable_records_and_missing_images(tmp_path, make_record):
    from fundusexpert_plugin.cli.main import main
    Image.new('RGB', (1000, 800)).save(tmp_path / 'ok.jpg')
    good = make_record([('optic_disc', (100, 100, 200, 200))], image='ok.jpg', record_id='good')
    gone = make_record(image='nope.jpg', record_id='gone')
    (tmp_path / 'recs.jsonl').write_text(good.model_dump_json() + '\n{broken\n' + gone.model_dump_json() + '\n')
    assert main(['build', '--records', str(tmp_path / 'recs.jsonl'), '--out', str(tmp_path / 'out'), '--lenient',
                 '--languages', 'en']) == 0
    saved = json.loads((tmp_path / 'out' / 'build_summary.json').read_text())
    assert saved['records_used'] == 1 and len(saved['skipped']) == 2
    assert 'recs.jsonl:2: not valid JSON' in saved['skipped'][0]          # skipped while reading
    # skipped while building, named by its line in the records file
    assert f"{tmp_path / 'recs.jsonl'}:3: record 'gone': image: image not found" in saved['skipped'][1]


def test_an_image_root_that_does_not_exist_is_named_as_such(tmp_path, make_record, capsys):
    from fundusexpert_plugin.cli.main import main
    from fundusexpert_plugin.core.paths import resolve_image_path
    Image.new('RGB', (1000, 800)).save(tmp_path / 'ok.jpg')
    rec = make_record([('optic_disc', (100, 100, 200, 200))], image='ok.jpg', record_id='good')
    (tmp_path / 'recs.jsonl').write_text(rec.model_dump_json() + '\n')
    argv = ['data', 'build', '--records', str(tmp_path / 'recs.jsonl'), '--out', str(tmp_path / 'out'),
            '--num-proc', '1', '--image-root', str(tmp_path / 'nope')]
    assert main(argv) == 2 and main(argv + ['--lenient']) == 2
    err = capsys.readouterr().err
    assert err == 2 * f"fundusexpert: error: --image-root: folder not found: {tmp_path / 'nope'}\n"
    assert not (tmp_path / 'out').exists()
    with pytest.raises(FileNotFoundError, match=r"^image_root: folder not found: .*nope$"):
        build_fundusgen([rec], tmp_path / 'out', image_dir=tmp_path, image_root=tmp_path / 'nope', lenient=True)
    # the one path rule says it too, instead of calling every path outside a folder that is not there
    with pytest.raises(FileNotFoundError, match=r"^dataset folder: folder not found: .*nope$"):
        resolve_image_path('ok.jpg', tmp_path, where='x', root=tmp_path / 'nope')
    with pytest.raises(FileNotFoundError, match=r"ok\.jpg is a file, not a folder$"):
        resolve_image_path('ok.jpg', tmp_path, where='x', root=tmp_path / 'ok.jpg')


def test_one_and_two_processes_write_the_same_rows_and_marked_copies(tmp_path):
    # num_proc=1 first: this process has then used OpenCV and Arrow before the pool forks its workers.
    from fundusexpert_plugin.sample import sample_records
    records = sample_records('train')[:4]
    one = build_fundusgen(records, tmp_path / 'one', image_dir=SAMPLE_DIR, languages=('en',), num_proc=1)
    two = build_fundusgen(records, tmp_path / 'two', image_dir=SAMPLE_DIR, languages=('en',), num_proc=2)
    assert one.rows_per_task == two.rows_per_task and one.rows_per_task['region_identification'] > 0
    for task_file in (tmp_path / 'one').glob('*.jsonl'):
        assert (tmp_path / 'two' / task_file.name).read_bytes() == task_file.read_bytes()
    marked = sorted(p.name for p in (tmp_path / 'one' / 'marked').iterdir())
    assert marked and marked == sorted(p.name for p in (tmp_path / 'two' / 'marked').iterdir())
    for name in marked:
        assert (tmp_path / 'one' / 'marked' / name).read_bytes() == (tmp_path / 'two' / 'marked' / name).read_bytes()


def test_lenient_build_from_records_skips_the_bad_box_and_keeps_the_record(tmp_path, capsys):
    from fundusexpert_plugin.cli.main import main
    from fundusexpert_plugin.sample import sample_records
    rec = json.loads(sample_records('train')[0].model_dump_json())          # 0003: 27 boxes, 3 classes annotated
    rec['image'] = str(SAMPLE_DIR / 'images' / '0003.jpg')
    assert rec['findings'][1]['label'] == 'hard_exudates'
    rec['findings'][1]['box_px'] = [float('nan'), 1, 2, 3]
    path = tmp_path / 'r.jsonl'
    path.write_text(json.dumps(rec) + '\n')
    argv = ['data', 'build', '--records', str(path), '--out', str(tmp_path / 'fg'), '--languages', 'en',
            '--num-proc', '1', '--allow-outside-root']
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert 'Traceback' not in err and len(err.splitlines()) == 1
    assert "r.jsonl:1: record '0003'" in err and 'findings[1].box_px' in err
    assert main(argv + ['--lenient']) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / 'fg' / 'build_summary.json').read_text())
    assert summary['records_used'] == 1 and summary['skipped'] == []
    assert f"  skipped box/item: {summary['skipped_boxes'][0]}" in printed.splitlines()   # the skipped box is printed
    assert len(summary['skipped_boxes']) == 1 and 'findings[1].box_px = (nan' in summary['skipped_boxes'][0]
    assert summary['skipped_boxes_by_reason'] == {'box_not_finite': 1}
    assert "boxes/items skipped 1 by reason {'box_not_finite': 1}" in printed
    rows = _rows(tmp_path / 'fg' / 'region_detection.jsonl')
    assert rows and {r['record_id'] for r in rows} == {'0003'}
    assert main(['data', 'validate', str(path), '--allow-outside-root']) == 1    # something would be skipped
    assert 'box_not_finite' in capsys.readouterr().out


def test_a_task_lacking_a_built_language_writes_none_of_it_and_says_so(tmp_path, caplog):
    import logging
    from fundusexpert_plugin.cli.main import main
    from fundusexpert_plugin.tasks.config import default_tasks_dir
    (tmp_path / 'tasks').mkdir()
    (tmp_path / 'tasks' / 'zh_report.yaml').write_text(
        'name: zh_report\nkind: report\nversion: 1\nprompts:\n  zh: ["请描述这张眼底照片。"]\nanswer:\n  zh: "{chain}"\n',
        encoding='utf-8')
    (tmp_path / 'tasks' / 'laterality.yaml').write_text(
        (default_tasks_dir() / 'laterality.yaml').read_text(encoding='utf-8'), encoding='utf-8')
    # --languages zh: every task has Chinese, nothing is missing
    assert main(['data', 'build', '--sample', '--tasks-dir', str(tmp_path / 'tasks'), '--out', str(tmp_path / 'zh'),
                 '--languages', 'zh', '--num-proc', '1']) == 0
    zh = json.loads((tmp_path / 'zh' / 'train' / 'build_summary.json').read_text(encoding='utf-8'))
    assert zh['rows_per_task'] == {'laterality': 8, 'zh_report': 8} and zh['task_languages_missing'] == {}
    # both languages: zh_report writes its 8 Chinese rows and no English ones, counted and logged once per folder
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='fundusexpert_plugin.build'):
        assert main(['data', 'build', '--sample', '--tasks-dir', str(tmp_path / 'tasks'),
                     '--out', str(tmp_path / 'both'), '--num-proc', '1']) == 0
    both = json.loads((tmp_path / 'both' / 'train' / 'build_summary.json').read_text(encoding='utf-8'))
    assert both['rows_per_task'] == {'laterality': 16, 'zh_report': 8}
    assert both['task_languages_missing'] == {'zh_report': {'en': 8}}
    rows = _rows(tmp_path / 'both' / 'train' / 'zh_report.jsonl')
    assert {r['lang'] for r in rows} == {'zh'} and len(rows) == 8
    notes = [r.getMessage() for r in caplog.records if 'defines no en prompts' in r.getMessage()]
    assert notes == [f"task 'zh_report' ({tmp_path / 'tasks' / 'zh_report.yaml'}) defines no en prompts: no en rows "
                     f"of it for the {n} records of {tmp_path / 'both' / split}" for split, n in (('train', 8),
                                                                                                ('heldout', 4))]


def test_records_with_review_flags_are_listed_by_the_build(tmp_path, capsys):
    from fundusexpert_plugin.cli.main import main
    from fundusexpert_plugin.sample import sample_records
    recs = [json.loads(r.model_dump_json()) for r in sample_records('train')[:2]]
    for rec in recs:
        rec['image'] = str(SAMPLE_DIR / 'images' / f"{rec['record_id']}.jpg")
    recs[1]['provenance']['flags'] = ['optic disc: the detector (1, 1) and the landmark locator (500, 300) are '
                                      '3.0 DD apart (> 1 DD); the detector\'s optic disc is used']
    path = tmp_path / 'r.jsonl'
    path.write_text(''.join(json.dumps(r) + '\n' for r in recs))
    assert main(['data', 'build', '--records', str(path), '--out', str(tmp_path / 'fg'), '--languages', 'en',
                 '--num-proc', '1', '--allow-outside-root']) == 0
    out = capsys.readouterr().out
    flagged = recs[1]['record_id']
    assert (f'  1 record(s) carry review flags (provenance.flags; their chain says "Flagged for review"): '
            f'{flagged}') in out.splitlines()
    assert json.loads((tmp_path / 'fg' / 'build_summary.json').read_text())['flagged_records'] == [flagged]
    report = [json.loads(line) for line in (tmp_path / 'fg' / 'report.jsonl').read_text().splitlines()]
    assert ['Flagged for review' in r['messages'][-1]['content'] for r in report] == [False, True]


@pytest.mark.parametrize('option, value, rule', [
    ('--marked-max-side', '-1', "expected 0 (full size) or a number of pixels >= 256, got '-1'"),
    ('--marked-max-side', '1', "expected 0 (full size) or a number of pixels >= 256, got '1'"),
    ('--marked-max-side', '255', "expected 0 (full size) or a number of pixels >= 256, got '255'"),
    ('--num-proc', '0', '0: expected an integer >= 1'),                  # the shared cli.common.positive_int
    ('--num-proc', 'two', "'two': expected an integer >= 1"),
    ('--max-image-pixels', '-1', '-1: expected an integer >= 1'),
])
def test_a_marked_side_below_the_minimum_or_no_worker_is_a_usage_error(tmp_path, capsys, option, value, rule):
    from fundusexpert_plugin.cli.main import main
    assert main(['data', 'build', '--sample', '--out', str(tmp_path / 'fg'), option, value]) == 2
    err = capsys.readouterr().err
    assert err == f'fundusexpert: error: argument {option}: {rule} (see: fundusexpert data build --help)\n'
    assert not (tmp_path / 'fg').exists()


def test_the_builder_refuses_a_marked_side_below_the_minimum_and_no_worker(tmp_path, make_record):
    from fundusexpert_plugin.build import MARKED_MIN_SIDE
    rec = make_record([('optic_disc', (100, 100, 200, 200))])
    with pytest.raises(ValueError, match=r'^marked_max_side = 1: expected None \(full size\) or a number of pixels '
                                         r'>= 256$'):
        build_fundusgen([rec], tmp_path / 'out', marked_max_side=1)
    with pytest.raises(ValueError, match=r'^num_proc = 0: expected a whole number >= 1$'):
        build_fundusgen([rec], tmp_path / 'out', num_proc=0)
    assert MARKED_MIN_SIDE == 256 and not (tmp_path / 'out').exists()


def test_marked_copies_at_the_minimum_side_are_that_size(tmp_path):
    from fundusexpert_plugin.cli.main import main
    assert main(['data', 'build', '--sample', '--out', str(tmp_path / 'fg'), '--marked-max-side', '256',
                 '--languages', 'en', '--num-proc', '1']) == 0
    rows = _rows(tmp_path / 'fg' / 'train' / 'region_identification.jsonl')
    sizes = {Image.open(tmp_path / 'fg' / 'train' / r['images'][0]).size for r in rows}
    assert sizes == {(256, 170)} and {(r['width'], r['height']) for r in rows} == {(256, 170)}   # 1072x712 photos


def test_a_label_laterality_against_the_disc_side_is_flagged_by_the_build(tmp_path, make_record, capsys):
    from fundusexpert_plugin.cli.main import main
    Image.new('RGB', (1072, 712)).save(tmp_path / 'a.jpg')
    findings = [('optic_disc', (112, 315, 212, 415)), ('haemorrhages', (600, 300, 630, 330))]
    lat = make_record(findings, width=1072, height=712, image='a.jpg', record_id='lat', laterality='right',
                      laterality_source='label')
    ok = make_record(findings, width=1072, height=712, image='a.jpg', record_id='ok', laterality='left',
                     laterality_source='label')
    engine_flag = ("dcm-1: DICOM laterality 'right' disagrees with the optic-disc position ('left' by the "
                   "macula-centred rule); keeping the DICOM value")
    dicom = make_record(findings, width=1072, height=712, image='a.jpg', record_id='dcm-1', laterality='right',
                        laterality_source='dicom', provenance={'source_dataset': 't', 'licence': 'x',
                                                               'flags': [engine_flag]})
    path = tmp_path / 'recs.jsonl'
    path.write_text(''.join(r.model_dump_json() + '\n' for r in (lat, ok, dicom)))
    assert main(['data', 'build', '--records', str(path), '--out', str(tmp_path / 'fg'), '--languages', 'en',
                 '--num-proc', '1']) == 0
    flag = ("laterality label 'right' disagrees with the optic-disc position ('left' by the macula-centred rule); "
            "keeping the label")
    out = capsys.readouterr().out.splitlines()
    assert f"  warning: {path}:1: record 'lat': {flag}" in out
    assert sum('disagrees with the optic-disc position' in line for line in out) == 1   # the engine's flag: once
    summary = json.loads((tmp_path / 'fg' / 'build_summary.json').read_text())
    assert summary['flagged_records'] == ['lat', 'dcm-1'] and summary['warnings'] == [f"{path}:1: record 'lat': {flag}"]
    report = {r['record_id']: r['messages'][-1]['content'] for r in _rows(tmp_path / 'fg' / 'report.jsonl')}
    assert ('Flagged for review: the laterality label gives the right eye, but the position of the optic disc '
            'suggests the left eye; the label is followed.') in report['lat'].splitlines()
    assert 'Flagged for review: the DICOM header gives the right eye' in report['dcm-1']
    assert 'whereas in a right eye it lies on the right' in report['lat'] and 'temporal' not in report['lat']
    assert 'Flagged' not in report['ok'] and 'disc diameters (DD) temporal' in report['ok']
    laterality = {r['record_id']: r['messages'][-1]['content'] for r in _rows(tmp_path / 'fg' / 'laterality.jsonl')}
    assert laterality['lat'] == 'Right eye.'                          # the label is kept, never resolved
    # data validate warns about it the same way, without skipping anything
    assert main(['data', 'validate', '--records', str(path)]) == 0
    assert f"  warning: {path}:1: record 'lat': {flag}" in capsys.readouterr().out.splitlines()


def _tasks(*names):
    from fundusexpert_plugin.tasks.config import load_tasks
    return [t for t in load_tasks() if t.name in names]


def test_a_rebuild_leaves_only_what_it_wrote_and_never_what_the_builder_did_not_write(tmp_path, caplog):
    from fundusexpert_plugin.sample import sample_records
    records = sample_records('train')
    out = tmp_path / 'fg'
    first = build_fundusgen(records, out, image_dir=SAMPLE_DIR, tasks=_tasks('region_identification', 'report'),
                            languages=['en'])
    n_marked = len(list((out / 'marked').iterdir()))
    assert n_marked == first.rows_per_task['region_identification'] > 0
    (out / 'notes.jsonl').write_text('{"mine": 1}\n')
    (out / 'marked' / 'README.txt').write_text('mine')
    with caplog.at_level('WARNING', logger='fundusexpert_plugin.build'):
        second = build_fundusgen(records[:1], out, image_dir=SAMPLE_DIR, tasks=_tasks('region_identification'),
                                 languages=['en'])
    # report.jsonl of the first build is gone, and with it every marked copy of the 7 other records
    assert sorted(p.name for p in out.glob('*.jsonl')) == ['notes.jsonl', 'region_identification.jsonl']
    rows = _rows(out / 'region_identification.jsonl')
    assert len(rows) == second.rows_per_task['region_identification'] < n_marked
    assert sorted(p.name for p in (out / 'marked').iterdir()) == sorted(
        ['README.txt'] + [r['images'][0].split('/')[-1] for r in rows])
    assert json.loads((out / 'build_summary.json').read_text())['rows_per_task'] == second.rows_per_task
    assert (out / 'notes.jsonl').read_text() == '{"mine": 1}\n'
    assert f'{out / "notes.jsonl"}: not written by the builder; left in place' in caplog.text
    # the summary lists the marked copies; a .jpg of the user's in marked/ stops the next build, kept as it is
    assert json.loads((out / 'build_summary.json').read_text())['marked_copies'] == sorted(r['images'][0] for r in rows)
    (out / 'marked' / 'zz_my.jpg').write_bytes(b'mine')
    with pytest.raises(FileExistsError, match=r"marked/zz_my\.jpg: exists and was not written by the builder \(.*"
                                              r"build_summary\.json does not list it; 1 such"):
        build_fundusgen(records[:1], out, image_dir=SAMPLE_DIR, tasks=_tasks('region_identification'), languages=['en'])
    assert (out / 'marked' / 'zz_my.jpg').read_bytes() == b'mine' and (out / 'build_summary.json').is_file()
    assert len(_rows(out / 'region_identification.jsonl')) == len(rows)       # the earlier build is intact


def test_a_rebuild_removes_the_image_copies_of_the_earlier_build(tmp_path):
    from fundusexpert_plugin.sample import sample_records
    records = sample_records('heldout')
    out = tmp_path / 'fg'
    first = build_fundusgen(records, out, image_dir=SAMPLE_DIR, tasks=_tasks('report'), languages=['en'],
                            copy_images=True)
    assert first.image_copies == sorted(f'images/{r.record_id}.png' for r in records)
    assert json.loads((out / 'build_summary.json').read_text())['image_copies'] == first.image_copies
    (out / 'images' / 'mine.png').write_bytes(b'not the builder\'s')
    second = build_fundusgen(records[:2], out, image_dir=SAMPLE_DIR, tasks=_tasks('report'), languages=['en'])
    assert second.image_copies == [] and sorted(p.name for p in (out / 'images').iterdir()) == ['mine.png']
    assert {(out / r['images'][0]).resolve() for r in _rows(out / 'report.jsonl')} == {
        (SAMPLE_DIR / 'images' / f'{r.record_id}.jpg').resolve() for r in records[:2]}   # the originals in place


def test_files_no_build_summary_lists_stop_the_build_and_nothing_is_removed(tmp_path, make_record):
    Image.new('RGB', (1000, 800)).save(tmp_path / 'ok.jpg')
    rec = make_record([('optic_disc', (100, 100, 200, 200))], image='ok.jpg', record_id='0003')
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'report.jsonl').write_text('{"mine": 1}\n')
    with pytest.raises(FileExistsError, match=r"report\.jsonl: exists and was not written by the builder \(.*out "
                                              r"holds no build_summary\.json\); refusing to overwrite it"):
        build_fundusgen([rec], out, image_dir=tmp_path, tasks=_tasks('report'))
    assert sorted(p.name for p in out.iterdir()) == ['report.jsonl']
    (out / 'report.jsonl').unlink()
    (out / 'marked').mkdir()
    (out / 'marked' / 'x.jpg').write_bytes(b'mine')
    with pytest.raises(FileExistsError, match=r"marked/x\.jpg: exists and was not written by the builder \(.*out "
                                              r"holds no build_summary\.json; 1 such \.jpg file\(s\) in "):
        build_fundusgen([rec], out, image_dir=tmp_path, tasks=_tasks('report'))
    assert (out / 'marked' / 'x.jpg').read_bytes() == b'mine'


def test_a_photo_where_its_copy_would_go_is_never_overwritten_and_the_failed_build_leaves_nothing(tmp_path,
                                                                                               make_record):
    import numpy as np
    # building into the dataset folder: the 16-bit photo needs an 8-bit copy at images/<record id>.png, itself
    (tmp_path / 'images').mkdir()
    Image.fromarray(np.full((800, 1000), 51200, np.uint16)).save(tmp_path / 'images' / '0003.png')
    original = (tmp_path / 'images' / '0003.png').read_bytes()
    Image.new('RGB', (1000, 800)).save(tmp_path / 'images' / '0001.jpg')
    findings = [('optic_disc', (100, 100, 200, 200)), ('hard_exudates', (500, 60, 540, 100))]
    recs = [make_record(findings, image='images/0001.jpg', record_id='0001'),
            make_record(findings, image='images/0003.png', record_id='0003')]
    with pytest.raises(FileExistsError, match=r"images/0003\.png: exists and was not written by the builder"):
        build_fundusgen(recs, tmp_path, image_dir=tmp_path, tasks=_tasks('region_identification', 'report'),
                        languages=['en'])
    assert (tmp_path / 'images' / '0003.png').read_bytes() == original
    # the marked copies of 0001 written before the refusal are gone: the folder holds no (half) build
    assert sorted(p.name for p in (tmp_path / 'images').iterdir()) == ['0001.jpg', '0003.png']
    assert not list((tmp_path / 'marked').glob('*')) and not list(tmp_path.glob('*.jsonl'))
    assert not (tmp_path / 'build_summary.json').exists()


def test_a_failed_rebuild_leaves_no_build_and_the_next_one_succeeds(tmp_path, make_record):
    Image.new('RGB', (1000, 800)).save(tmp_path / 'ok.jpg')
    findings = [('optic_disc', (100, 100, 200, 200)), ('hard_exudates', (500, 60, 540, 100))]
    good = make_record(findings, image='ok.jpg', record_id='good')
    gone = make_record(findings, image='nope.jpg', record_id='gone')
    out = tmp_path / 'out'
    tasks = _tasks('region_identification')
    build_fundusgen([good], out, image_dir=tmp_path, tasks=tasks, languages=['en'])
    with pytest.raises(FundusDataError, match="record 'gone': image: image not found"):
        build_fundusgen([good, gone], out, image_dir=tmp_path, tasks=tasks, languages=['en'])
    assert sorted(p.name for p in out.iterdir()) == ['marked'] and not list((out / 'marked').iterdir())
    summary = build_fundusgen([good], out, image_dir=tmp_path, tasks=tasks, languages=['en'])
    assert summary.rows_per_task == {'region_identification': 2}
    assert len(list((out / 'marked').iterdir())) == 2


def test_a_grey_photo_of_hand_written_records_is_called_greyscale(tmp_path, make_record):
    """Records without the intake's note: the builder's own conversion (L->RGB) reaches prompts and chain."""
    with Image.open(SAMPLE_DIR / 'images' / '0003.jpg') as im:
        im.convert('L').save(tmp_path / 'grey.png')
        width, height = im.size
    rec = make_record([('optic_disc', (100, 300, 240, 440))], width=width, height=height, image='grey.png',
                      laterality='left')
    assert 'image' not in rec.provenance.stages
    build_fundusgen([rec], tmp_path / 'fg', image_dir=tmp_path, languages=['en'])
    (report,) = _rows(tmp_path / 'fg' / 'report.jsonl')
    assert report['messages'][-1]['content'].startswith('This is a greyscale fundus photograph of the left eye')
    assert report['images'] == ['images/r1.png']       # the converted copy, 8-bit RGB
    laterality = _rows(tmp_path / 'fg' / 'laterality.jsonl')
    assert all('colour' not in r['messages'][-2]['content'] for r in laterality)


def test_a_summary_from_before_marked_copies_were_listed_counts_every_marked_jpg_as_its_own(tmp_path):
    from fundusexpert_plugin.sample import sample_records
    records = sample_records('heldout')[:1]
    out = tmp_path / 'fg'
    build_fundusgen(records, out, image_dir=SAMPLE_DIR, tasks=_tasks('region_identification'), languages=['en'])
    summary = json.loads((out / 'build_summary.json').read_text())
    del summary['marked_copies']
    (out / 'build_summary.json').write_text(json.dumps(summary))
    (out / 'marked' / 'older.jpg').write_bytes(b'an earlier build')
    again = build_fundusgen(records, out, image_dir=SAMPLE_DIR, tasks=_tasks('region_identification'), languages=['en'])
    assert sorted('marked/' + p.name for p in (out / 'marked').iterdir()) == again.marked_copies
    assert 'marked/older.jpg' not in again.marked_copies and len(again.marked_copies) > 0


def test_rows_with_more_than_100_boxes_are_a_build_warning(tmp_path, make_record):
    from fundusexpert_plugin.tasks.config import default_tasks_dir, load_task
    Image.new('RGB', (1000, 800), (120, 40, 20)).save(tmp_path / 'img.jpg')
    # 11 x 11 = 121 haemorrhage boxes of 10 x 10 px on a 50 px grid
    boxes = [('haemorrhages', (50 * i, 50 * j, 50 * i + 10, 50 * j + 10)) for i in range(11) for j in range(11)]
    rec = make_record([('optic_disc', (700, 300, 800, 400)), *boxes], record_id='many')
    summary = build_fundusgen([rec], tmp_path / 'fg', image_dir=tmp_path, languages=['en'], num_proc=1,
                              tasks=[load_task(default_tasks_dir() / 'region_detection.yaml')])
    assert summary.warnings == ["task 'region_detection': 1 row(s) hold more than 100 boxes (up to 121, record 'many'), "
                                'past a usual --max_length; cap them with max_boxes and prompts_capped in the task, '
                                "or raise the detector's --score-threshold"]
