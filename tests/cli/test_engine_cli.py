"""Tests of fundusexpert_plugin/cli/engine.py: ``engine run`` and ``engine merge`` through the command line,
the engine built from its options by EngineSpec (the MMDetection detector replaced by the stand-in)."""
import json

import pytest

from fundusexpert_plugin.cli.main import main
from fundusexpert_plugin.sample import SAMPLE_DIR
from fundusexpert_plugin.testing.fake_detector import FakeDetector

BUILT = []


class _StandInDetector(FakeDetector):
    """Takes detect.Detector's arguments, keeps them, and detects like FakeDetector."""

    def __init__(self, config, checkpoint=None, **kwargs):
        super().__init__()
        BUILT.append((config, checkpoint, kwargs))


@pytest.fixture
def stand_in(monkeypatch):
    import fundusexpert_plugin.detector.detect as detect
    monkeypatch.setattr(detect, 'Detector', _StandInDetector)
    BUILT.clear()
    return BUILT


def test_engine_run_writes_its_shard_and_merge_joins_it(stand_in, tmp_path, capsys):
    out = tmp_path / 'engine_out'
    labels = tmp_path / 'labels.csv'
    labels.write_text('image,dr_grade\n0006.jpg,3\n')
    argv = ['engine', 'run', '--images', str(SAMPLE_DIR / 'images'), '--detector', str(tmp_path / 'rtm.py'),
            '--checkpoint', str(tmp_path / 'rtm.pth'), '--out', str(out), '--shard', '1/3', '--no-progress',
            '--languages', 'en', '--score-threshold', '0.5', '--image-labels', str(labels)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    stems = sorted(p.stem for p in (SAMPLE_DIR / 'images').glob('*.jpg'))
    # shard = first 8 bytes of sha256(stem) mod 3: 1, 7 and 4 of the 12 photographs (roughly balanced)
    mine = ['0001', '0005', '0006', '0007', '0008', '0013', '0049']
    assert len(stems) == 12 and (summary['shard'], summary['images'], summary['written']) == ('1/3', 7, 7)
    assert stand_in == [(str(tmp_path / 'rtm.py'), str(tmp_path / 'rtm.pth'),
                         {'device': 'cpu', 'score_threshold': 0.5, 'tile_size': None, 'tile_overlap': 0.2})]
    rows = [json.loads(line) for line in (out / 'records-1-of-3.jsonl').read_text().splitlines()]
    assert [r['record_id'] for r in rows] == mine  # in the job's (sorted) order
    assert {r['provenance']['stages']['localization'] for r in rows} == {'mmdet:rtm.py@rtm.pth'}
    assert [r['image_labels'] for r in rows] == [{}, {}, {'dr_grade': '3'}, {}, {}, {}, {}]  # 0006 only
    assert main(['engine', 'merge', '--out', str(out)]) == 2                  # shards 0/3 and 2/3 have not run
    assert 'no files of shard(s) 0/3, 2/3' in capsys.readouterr().err
    assert main(['engine', 'merge', '--out', str(out), '--partial']) == 0
    assert capsys.readouterr().out.splitlines() == [str(out / 'records.jsonl'), str(out / 'skipped.jsonl'),
                                                    '7 records, 0 skipped']
    assert [json.loads(line)['record_id'] for line in (out / 'records.jsonl').read_text().splitlines()] == mine

    assert main(argv) == 0  # a rerun resumes: nothing new
    again = json.loads(capsys.readouterr().out)
    assert (again['written'], again['resumed'], again['records']) == (0, 7, 7)


def test_engine_run_without_a_detector_uses_the_landmark_locator(tmp_path, capsys):
    import shutil

    from fundusexpert_plugin.sample import sample_records
    photos = tmp_path / 'photos'
    photos.mkdir()
    truth = {r.record_id: r for r in sample_records('train') if r.record_id in ('0003', '0006')}
    for rid in truth:
        shutil.copy(SAMPLE_DIR / 'images' / f'{rid}.jpg', photos / f'{rid}.jpg')
    out = tmp_path / 'out'
    assert main(['engine', 'run', '--images', str(photos), '--out', str(out), '--no-progress', '--languages', 'en']) == 0
    assert json.loads(capsys.readouterr().out)['written'] == 2
    rows = [json.loads(line) for line in (out / 'records-0-of-1.jsonl').read_text().splitlines()]
    for row in rows:
        assert row['provenance']['stages']['localization'] == 'none'
        assert {f['label'] for f in row['findings']} <= {'optic_disc', 'fovea'}      # no lesion without a detector
        (disc,) = [f['box_px'] for f in row['findings'] if f['label'] == 'optic_disc']
        (ann,) = truth[row['record_id']].boxes('optic_disc')
        centre = ((disc[0] + disc[2]) / 2, (disc[1] + disc[3]) / 2)
        expected = ((ann[0] + ann[2]) / 2, (ann[1] + ann[3]) / 2)
        # the annotated disc centre at 1072x712 (a disc is about 150 px across)
        assert abs(centre[0] - expected[0]) < 20 and abs(centre[1] - expected[1]) < 20
    assert main(['engine', 'run', '--images', str(photos), '--out', str(out), '--detector', 'cfg.py']) == 2
    assert 'give both the detector config and its checkpoint' in capsys.readouterr().err


def test_engine_merge_of_a_folder_without_shards_is_one_line(tmp_path, capsys):
    assert main(['engine', 'merge', '--out', str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f'fundusexpert: error: {tmp_path}: no records-*-of-*.jsonl shard files\n'


def test_engine_merge_of_an_incomplete_shard_set_is_one_line_and_partial_merges(tmp_path, capsys):
    (tmp_path / 'records-0-of-2.jsonl').write_text('')        # shard 1/2 never ran here
    assert main(['engine', 'merge', '--out', str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (f'fundusexpert: error: {tmp_path}: the shards are incomplete: no files of shard(s) 1/2: run '
                   '`fundusexpert engine run --shard 1/2` with the same options first (engine merge --partial '
                   'merges what is there)\n')
    assert main(['engine', 'merge', '--out', str(tmp_path), '--partial']) == 0
    assert capsys.readouterr().out.splitlines()[-1] == '0 records, 0 skipped'


def test_engine_run_on_dicom_uses_salted_uid_ids_and_leaks_no_header_value(stand_in, tmp_path, capsys):
    import numpy as np
    import pydicom
    from PIL import Image

    from fundusexpert_plugin.core.dicom import record_id_from_uid
    from fundusexpert_plugin.testing.fake_dicom import FAKE_PATIENT, write_fake_dicom
    with Image.open(SAMPLE_DIR / 'images' / '0003.jpg') as im:
        rgb = np.asarray(im.convert('RGB').resize((536, 356)))
    photos = tmp_path / 'photos'
    photos.mkdir()
    name = 'DOE_JANE_19580214'  # an identifying file name: must not become the record id
    write_fake_dicom(photos / f'{name}.dcm', rgb, image_laterality='L')
    write_fake_dicom(photos / 'IM000017', rgb, image_laterality='L')  # no suffix: listed by content
    (photos / 'notes.txt').write_text('DOE^JANE')  # neither an image nor listed
    out = tmp_path / 'out'
    argv = ['engine', 'run', '--images', str(photos), '--detector', str(tmp_path / 'rtm.py'), '--checkpoint',
            str(tmp_path / 'rtm.pth'), '--out', str(out), '--no-progress', '--languages', 'en', '--salt', 'k1']
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)['written'] == 2
    assert (out / 'dicom_salt.txt').read_text() == 'k1\n'
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in (photos / f'{name}.dcm', photos / 'IM000017')]
    rows = [json.loads(line) for line in (out / 'records-0-of-1.jsonl').read_text().splitlines()]
    assert sorted(r['record_id'] for r in rows) == sorted(record_id_from_uid(h.SOPInstanceUID, 'k1') for h in headers)
    for row in rows:
        assert (row['laterality'], row['laterality_source'], row['provenance']['flags']) == ('left', 'dicom', [])
        assert row['pixel_spacing_mm'] == [0.0105, 0.0105] and row['image'] == f"images/{row['record_id']}.png"
    secrets = set(FAKE_PATIENT.values()) | {name, 'IM000017', 'DOE JANE', 'MRN-0042'}
    secrets |= {h.get(k) for h in headers for k in ('SOPInstanceUID', 'StudyInstanceUID', 'SeriesInstanceUID')}
    files = [p for p in out.rglob('*') if p.is_file()]
    assert len(files) == 7  # records, skipped, summary, salt, run options, two PNGs
    assert [(p.name, s) for p in files for s in secrets if s.encode() in p.read_bytes()] == []
    assert main(argv[:-2] + ['--salt', 'k2']) == 2  # another salt would change the ids
    assert '--salt differs from the salt recorded in' in capsys.readouterr().err
    assert main(argv[:-2]) == 0 and json.loads(capsys.readouterr().out)['resumed'] == 2  # the recorded salt



def test_a_patient_folder_name_stays_out_of_the_output_and_another_salt_is_refused(stand_in, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from fundusexpert_plugin.testing.fake_dicom import write_fake_dicom
    rgb = np.asarray(Image.open(SAMPLE_DIR / 'images' / '0003.jpg').convert('RGB').resize((268, 178)))
    photos = tmp_path / 'Quistorp_Bartholomew_MRN77881234'   # a PACS export: one folder per patient
    photos.mkdir()
    write_fake_dicom(photos / 'IM0001.dcm', rgb)
    write_fake_dicom(photos / 'IM0002.dcm', rgb)
    out = tmp_path / 'out'
    argv = ['engine', 'run', '--images', str(photos), '--out', str(out), '--no-progress', '--languages', 'en']
    assert main(argv) == 0                                    # the default salt file <out>/dicom_salt.txt
    assert json.loads(capsys.readouterr().out)['written'] == 2
    for path in out.rglob('*'):
        if path.is_file():
            assert b'Quistorp' not in path.read_bytes() and b'MRN77881234' not in path.read_bytes(), path
    (out / 'images' / '.dcm-0123.png.1a2b3c4d.part').write_bytes(b'half a PNG')   # left by a killed run
    assert main(['engine', 'merge', '--out', str(out)]) == 0
    assert sorted(p.name for p in (out / 'images').iterdir()) == sorted(
        f"{json.loads(line)['record_id']}.png" for line in (out / 'records.jsonl').read_text().splitlines())
    capsys.readouterr()
    salt_file = tmp_path / 'private' / 'salt.txt'             # another salt: other ids for the same files
    assert main(argv + ['--salt-file', str(salt_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'fundusexpert: error: {out / "engine_options.json"}: the records in {out} were made '
                          'with other options (the DICOM salt (--salt / --salt-file; SHA-256 of the salt) "')
    assert err.count('\n') == 1 and len((out / 'records-0-of-1.jsonl').read_text().splitlines()) == 2
    assert main(argv + ['--salt-file', str(out / 'dicom_salt.txt')]) == 0    # the recorded salt resumes
    assert json.loads(capsys.readouterr().out)['resumed'] == 2


def test_the_pixel_limit_skips_a_dicom_photo_as_it_does_a_jpeg(stand_in, tmp_path, capsys, monkeypatch):
    import numpy as np
    from PIL import Image

    from fundusexpert_plugin.core import images
    from fundusexpert_plugin.testing.fake_dicom import write_fake_dicom
    monkeypatch.setattr(images, 'MAX_PIXELS', images.MAX_PIXELS)  # restored after the test
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', Image.MAX_IMAGE_PIXELS)
    rgb = np.asarray(Image.open(SAMPLE_DIR / 'images' / '0003.jpg').convert('RGB').resize((268, 178)))
    photos = tmp_path / 'photos'
    photos.mkdir()
    write_fake_dicom(photos / 'IM0001.dcm', rgb)
    Image.fromarray(rgb).save(photos / 'b.png')
    assert main(['engine', 'run', '--images', str(photos), '--out', str(tmp_path / 'out'), '--no-progress',
                 '--max-image-pixels', '47703']) == 0         # 268 x 178 = 47,704 pixels
    summary = json.loads(capsys.readouterr().out)
    assert (summary['records'], summary['skipped']) == (0, {'image_too_large': 2})

def test_an_unusable_dicom_is_skipped_under_its_record_id_never_its_file_name(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from fundusexpert_plugin.testing.fake_dicom import write_fake_dicom
    photos = tmp_path / 'photos'
    photos.mkdir()
    rgb = np.asarray(Image.open(SAMPLE_DIR / 'images' / '0003.jpg').convert('RGB').resize((268, 178)))
    write_fake_dicom(photos / 'DOE_JANE_MRN123456.dcm', rgb, burned_in=True)     # refused by the intake
    Image.fromarray(rgb).save(photos / 'ok.png')
    out = tmp_path / 'out'
    assert main(['engine', 'run', '--images', str(photos), '--out', str(out), '--no-progress', '--salt', 's3cret']) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['written'] == 1 and summary['skipped'] == {'dicom_burned_in': 1}
    (skip,) = [json.loads(line) for line in (out / 'skipped-0-of-1.jsonl').read_text().splitlines()]
    assert skip['image'] == f"DICOM file, name withheld (record id {skip['image_key']})"
    assert skip['image_key'].startswith('dcm-') and 'BurnedInAnnotation' in skip['reason']
    for path in out.rglob('*'):
        if path.is_file():
            assert b'DOE' not in path.read_bytes() and b'MRN123456' not in path.read_bytes(), path
    # the refusal names --accept-burned-in; engine run takes it, as data convert does
    out2 = tmp_path / 'out2'
    assert main(['engine', 'run', '--images', str(photos), '--out', str(out2), '--no-progress', '--salt', 's3cret',
                 '--accept-burned-in']) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['written'] == 2 and summary['skipped'] == {}
    recs = {json.loads(line)['record_id']: json.loads(line) for line in
            (out2 / 'records-0-of-1.jsonl').read_text().splitlines()}
    assert set(recs) == {skip['image_key'], 'ok'}
    # the acceptance travels with the record
    assert recs[skip['image_key']]['provenance']['stages']['image'] == (
        'DICOM RGB; BurnedInAnnotation = YES accepted: the pixels may show identifying text')
    assert 'image' not in recs['ok']['provenance']['stages']


def _one_photo(tmp_path, name='IDRiD_006.jpg'):
    import shutil
    photos = tmp_path / 'photos'
    photos.mkdir()
    shutil.copy(SAMPLE_DIR / 'images' / '0006.jpg', photos / name)
    return photos


def test_a_rerun_with_other_record_options_is_refused_naming_them(stand_in, tmp_path, capsys):
    photos = _one_photo(tmp_path)
    out = tmp_path / 'out'
    base = ['engine', 'run', '--images', str(photos), '--out', str(out), '--languages', 'en']
    assert main(base + ['--no-progress']) == 0                    # the landmark locator alone
    assert json.loads(capsys.readouterr().out)['written'] == 1
    recorded = json.loads((out / 'engine_options.json').read_text())
    assert (recorded['config'], recorded['source_dataset'], recorded['languages']) == (
        None, 'unlabelled photographs', ['en'])
    det = ['--detector', str(tmp_path / 'rtm.py'), '--checkpoint', str(tmp_path / 'rtm.pth')]
    assert main(base + det) == 2
    err = capsys.readouterr().err
    assert err == (f'fundusexpert: error: {out / "engine_options.json"}: the records in {out} were made with other '
                   f'options (--checkpoint null -> "{tmp_path / "rtm.pth"}"; --detector null -> '
                   f'"{tmp_path / "rtm.py"}"); give a new --out (or the recorded options to resume)\n')
    assert stand_in == []                                         # refused before the detector was loaded
    assert main(base + ['--source-dataset', 'IDRiD']) == 2
    assert '(--source-dataset "unlabelled photographs" -> "IDRiD")' in capsys.readouterr().err
    # options that do not change records are not compared: progress, shard, device
    assert main(base + ['--no-progress', '--shard', '0/1', '--device', 'cpu']) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again['written'], again['resumed'], again['records']) == (0, 1, 1)
    assert main(base + det + ['--out', str(tmp_path / 'out2'), '--no-progress']) == 0   # a new --out is fine
    (row,) = [json.loads(line) for line in (tmp_path / 'out2' / 'records-0-of-1.jsonl').read_text().splitlines()]
    assert row['provenance']['stages']['localization'] == 'mmdet:rtm.py@rtm.pth'


def test_an_output_folder_inside_the_image_folder_is_not_listed(stand_in, tmp_path, capsys, caplog):
    from PIL import Image
    photos = _one_photo(tmp_path)
    Image.new('L', (120, 90), 90).save(photos / 'grey.png')     # converted: the engine writes out/images/grey.png
    out = photos / 'engine_out'
    argv = ['engine', 'run', '--images', str(photos), '--out', str(out), '--no-progress', '--languages', 'en',
            '--detector', 'rtm.py', '--checkpoint', 'rtm.pth']
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)['written'] == 2
    assert (out / 'images' / 'grey.png').exists()
    caplog.clear()
    caplog.set_level('INFO')
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again['images'], again['written'], again['resumed'], again['records']) == (2, 0, 2, 2)
    notes = [r.getMessage() for r in caplog.records if 'lies inside --images' in r.getMessage()]
    assert notes == [f'--out {out} lies inside --images {photos}: its files are not listed as photographs']


def test_image_label_rows_that_match_no_photo_are_named_in_one_warning(stand_in, tmp_path, capsys, caplog):
    photos = _one_photo(tmp_path)
    labels = tmp_path / 'labels.csv'
    labels.write_text('image,dr_grade\nIDRiD_006.jpg,2\nIDRiD_999,1\nidrid_006,3\n')
    argv = ['engine', 'run', '--images', str(photos), '--out', str(tmp_path / 'out'), '--no-progress',
            '--languages', 'en', '--detector', 'rtm.py', '--checkpoint', 'rtm.pth', '--image-labels', str(labels)]
    assert main(argv) == 0
    capsys.readouterr()
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
    assert warning == (f'{labels}: 2 image-label row(s) match no photograph of the job (ids are case-sensitive '
                       "paths relative to --images, file names for a list; a suffix must be the photograph's): "
                       'IDRiD_999, idrid_006')
    (row,) = [json.loads(line) for line in (tmp_path / 'out' / 'records-0-of-1.jsonl').read_text().splitlines()]
    assert row['image_labels'] == {'dr_grade': '2'}              # the suffix in the CSV is optional


def test_one_photo_is_a_one_photo_job_and_a_non_utf8_list_names_its_line(stand_in, tmp_path, capsys):
    photos = _one_photo(tmp_path)
    common = ['--no-progress', '--languages', 'en', '--detector', 'rtm.py', '--checkpoint', 'rtm.pth']
    assert main(['engine', 'run', '--images', str(photos / 'IDRiD_006.jpg'), '--out', str(tmp_path / 'o1')]
                + common) == 0
    assert json.loads(capsys.readouterr().out)['written'] == 1
    (row,) = [json.loads(line) for line in (tmp_path / 'o1' / 'records-0-of-1.jsonl').read_text().splitlines()]
    assert row['record_id'] == 'IDRiD_006'
    listing = tmp_path / 'list.txt'
    listing.write_bytes(b'photos/IDRiD_006.jpg\nphotos/caf\xe9.jpg\n')   # Latin-1: byte 21 + 10 on line 2
    assert main(['engine', 'run', '--images', str(listing), '--out', str(tmp_path / 'o2')] + common) == 2
    assert capsys.readouterr().err == f'fundusexpert: error: {listing}:2: byte offset 31 is not UTF-8\n'


def test_bad_threshold_and_torchrun_shard_name_where_they_came_from(tmp_path, capsys, monkeypatch):
    photos = _one_photo(tmp_path)
    argv = ['engine', 'run', '--images', str(photos), '--out', str(tmp_path / 'out'), '--no-progress']
    assert main(argv + ['--score-threshold', '2.0']) == 2
    assert 'argument --score-threshold: 2.0: expected a number in [0, 1]' in capsys.readouterr().err
    monkeypatch.setenv('RANK', '5')
    monkeypatch.setenv('WORLD_SIZE', '2')
    assert main(argv) == 2
    assert capsys.readouterr().err == ('fundusexpert: error: shard from the environment RANK=5 WORLD_SIZE=2: need '
                                       'integers with 0 <= RANK < WORLD_SIZE (or give --shard i/n)\n')


def test_a_first_run_that_stopped_before_any_photo_does_not_pin_its_options(stand_in, tmp_path, capsys):
    photos = _one_photo(tmp_path)
    labels = tmp_path / 'labels.csv'
    labels.write_text('image,dr_grade\nIDRiD_006,2\n')
    argv = ['engine', 'run', '--images', str(photos), '--out', str(tmp_path / 'out'), '--no-progress',
            '--detector', 'rtm.py', '--checkpoint', 'rtm.pth', '--image-labels']
    assert main(argv + [str(tmp_path / 'lables.csv'), '--languages', 'zh']) == 2   # a mistyped path: read first
    assert capsys.readouterr().err == f'fundusexpert: error: label table not found: {tmp_path / "lables.csv"}\n'
    assert not (tmp_path / 'out' / 'engine_options.json').exists()
    assert main(argv + [str(labels), '--languages', 'en']) == 0
    assert json.loads(capsys.readouterr().out)['written'] == 1
    options = json.loads((tmp_path / 'out' / 'engine_options.json').read_text())
    assert (options['image_labels'], options['languages']) == (str(labels), ['en'])
    assert main(argv + [str(labels), '--languages', 'zh']) == 2                    # now the folder holds a record
    assert '(--languages ["en"] -> ["zh"])' in capsys.readouterr().err


def test_a_bad_label_table_stops_the_job_before_any_photo_naming_its_line(stand_in, tmp_path, capsys):
    photos = _one_photo(tmp_path)
    out = tmp_path / 'out'
    argv = ['engine', 'run', '--images', str(photos), '--out', str(out), '--no-progress', '--languages', 'en',
            '--detector', 'rtm.py', '--checkpoint', 'rtm.pth', '--image-labels']
    bad = tmp_path / 'bad9.csv'
    bad.write_text('image,dr_grade\nIDRiD_006,9\n')
    assert main(argv + [str(bad)]) == 2
    assert capsys.readouterr().err == (f"fundusexpert: error: {bad}:2: column 'dr_grade' = '9': unknown grade; "
                                       'expected one of [0, 1, 2, 3, 4]\n')
    assert stand_in == [] and not list(out.glob('records-*'))   # no detector loaded, no record written
    dup = tmp_path / 'dup.csv'
    dup.write_text('image,dr_grade\nIDRiD_006,2\nIDRiD_006.jpg,3\n')
    assert main(argv + [str(dup)]) == 2
    assert capsys.readouterr().err == (f"fundusexpert: error: {dup}:3: image 'IDRiD_006.jpg' gives the record id "
                                       f"'IDRiD_006' of {dup}:2 ('IDRiD_006') again; one row per photograph\n")
    latin = tmp_path / 'latin1.csv'
    latin.write_bytes('image,dr_grade\nIDRiD_006,2\ncafé,1\n'.encode('latin-1'))
    assert main(argv + [str(latin)]) == 2
    assert capsys.readouterr().err == f'fundusexpert: error: {latin}:3: byte offset 30 is not UTF-8\n'


def _sha(text):
    import hashlib
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_rerun_after_editing_the_label_table_or_with_other_images_is_refused(stand_in, tmp_path, capsys):
    from fundusexpert_plugin.engine.labels import read_image_labels
    photos = _one_photo(tmp_path)
    (tmp_path / 'b').mkdir()
    other = _one_photo(tmp_path / 'b', 'IDRiD_007.jpg')
    labels = tmp_path / 'labels.csv'
    labels.write_text('image,dr_grade,notes\nIDRiD_006,2,first\n')
    out = tmp_path / 'out'
    argv = ['engine', 'run', '--out', str(out), '--no-progress', '--languages', 'en', '--detector', 'rtm.py',
            '--checkpoint', 'rtm.pth', '--image-labels', str(labels)]
    assert main(argv + ['--images', str(photos)]) == 0
    capsys.readouterr()
    old = read_image_labels(labels).digest()
    recorded = json.loads((out / 'engine_options.json').read_text())
    assert (recorded['images_sha256'], recorded['image_labels_sha256']) == (_sha(str(photos)), old)
    assert str(photos) not in (out / 'engine_options.json').read_text()     # a folder name may carry a patient's
    labels.write_text('image,dr_grade,notes\nIDRiD_006,2,second\n')         # a column not read: same records
    assert main(argv + ['--images', str(photos)]) == 0
    assert json.loads(capsys.readouterr().out)['resumed'] == 1
    labels.write_text('image,dr_grade,notes\nIDRiD_006,3,second\n')         # an edited grade
    new = read_image_labels(labels).digest()
    assert main(argv + ['--images', str(photos)]) == 2
    assert capsys.readouterr().err == (
        f'fundusexpert: error: {out / "engine_options.json"}: the records in {out} were made with other options '
        f'(--image-labels content (SHA-256 of its rows) "{old}" -> "{new}"); give a new --out (or the recorded '
        'options to resume)\n')
    labels.write_text('image,dr_grade,notes\nIDRiD_006,2,second\n')
    assert main(argv + ['--images', str(other)]) == 2                         # another folder: not mixed in
    assert (f'(--images (SHA-256 of its absolute path) "{_sha(str(photos))}" -> "{_sha(str(other))}")'
            in capsys.readouterr().err)
    (row,) = [json.loads(line) for line in (out / 'records-0-of-1.jsonl').read_text().splitlines()]
    assert (row['record_id'], row['image_labels']) == ('IDRiD_006', {'dr_grade': '2'})


@pytest.mark.parametrize('option, value, expected', [
    ('--tile-size', '-5', 'argument --tile-size: -5: expected an integer >= 1'),
    ('--tile-size', '512.5', "argument --tile-size: '512.5': expected an integer >= 1"),
    ('--tile-overlap', '1.5', 'argument --tile-overlap: 1.5: expected a number in [0, 1)'),
    ('--tile-overlap', '1', 'argument --tile-overlap: 1: expected a number in [0, 1)'),
    ('--max-image-pixels', '-1', 'argument --max-image-pixels: -1: expected an integer >= 1'),
    ('--max-image-pixels', '0', 'argument --max-image-pixels: 0: expected an integer >= 1'),
])
def test_out_of_range_numbers_are_usage_errors_before_anything_is_written(tmp_path, capsys, option, value,
                                                                          expected):
    photos = _one_photo(tmp_path)
    argv = ['engine', 'run', '--images', str(photos), '--out', str(tmp_path / 'out'), option, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f'fundusexpert: error: {expected} (see: fundusexpert engine run --help)\n'
    assert not (tmp_path / 'out').exists()


def test_max_image_pixels_skips_larger_photographs_and_is_not_a_record_option(tmp_path, capsys, monkeypatch):
    import fundusexpert_plugin.core.images as images
    from PIL import Image
    monkeypatch.setattr(images, 'MAX_PIXELS', images.MAX_PIXELS)  # restored after the test
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', Image.MAX_IMAGE_PIXELS)
    photos = _one_photo(tmp_path)
    out = tmp_path / 'out'
    argv = ['engine', 'run', '--images', str(photos), '--out', str(out), '--no-progress', '--languages', 'en']
    assert main(argv + ['--max-image-pixels', '1000']) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary['records'], summary['skipped']) == (0, {'image_too_large': 1})
    (skip,) = [json.loads(line) for line in (out / 'skipped-0-of-1.jsonl').read_text().splitlines()]
    assert skip['reason'] == ('1072x712 = 763264 pixels is above the limit of 1000 pixels (decompression-bomb '
                              'guard); raise the limit (--max-image-pixels) only for a trusted file')
    assert main(argv) == 0                                            # the default limit: retried, now a record
    again = json.loads(capsys.readouterr().out)
    assert (again['records'], again['retried'], again['skipped']) == (1, 1, {})


def test_merge_refuses_a_half_written_shard_until_engine_run_completes_it(stand_in, tmp_path, capsys):
    photos = _one_photo(tmp_path)
    out = tmp_path / 'out'
    run = ['engine', 'run', '--images', str(photos), '--out', str(out), '--no-progress', '--languages', 'en',
           '--detector', 'rtm.py', '--checkpoint', 'rtm.pth']
    assert main(run) == 0
    shard = out / 'records-0-of-1.jsonl'
    whole = shard.read_bytes()
    shard.write_bytes(whole[:40])                                # killed while writing its first line
    capsys.readouterr()
    assert main(['engine', 'merge', '--out', str(out)]) == 2
    assert capsys.readouterr().err == (
        f'fundusexpert: error: {shard}:1: half-written last line (the run writing this shard was interrupted); '
        'rerun `fundusexpert engine run` (or `engine ray`) with the same options and --out to complete the '
        'shard, then merge again\n')
    assert shard.read_bytes() == whole[:40] and not (out / 'records.jsonl').exists()   # nothing touched
    assert main(run) == 0                                        # drops the half line, writes the record again
    assert json.loads(capsys.readouterr().out)['written'] == 1
    assert main(['engine', 'merge', '--out', str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == '1 records, 0 skipped'
    assert (out / 'records.jsonl').read_bytes() == whole
