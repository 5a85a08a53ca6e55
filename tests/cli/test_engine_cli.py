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
    assert len(stems) == 12 and (summary['shard'], summary['images'], summary['written']) == ('1/3', 4, 4)
    assert stand_in == [(str(tmp_path / 'rtm.py'), str(tmp_path / 'rtm.pth'),
                         {'device': 'cpu', 'score_threshold': 0.5, 'tile_size': None, 'tile_overlap': 0.2})]
    rows = [json.loads(line) for line in (out / 'records-1-of-3.jsonl').read_text().splitlines()]
    assert [r['record_id'] for r in rows] == stems[1::3]  # round-robin over the sorted photographs
    assert {r['provenance']['stages']['localization'] for r in rows} == {'mmdet:rtm.py@rtm.pth'}
    assert [r['image_labels'] for r in rows] == [{}, {'dr_grade': '3'}, {}, {}]  # 0003, 0006, 0013, 0022
    assert main(['engine', 'merge', '--out', str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / 'records.jsonl')
    assert [json.loads(line)['record_id'] for line in (out / 'records.jsonl').read_text().splitlines()] == stems[1::3]

    assert main(argv) == 0  # a rerun resumes: nothing new
    again = json.loads(capsys.readouterr().out)
    assert (again['written'], again['resumed']) == (0, 4)


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
    assert len(files) == 6  # records, skipped, summary, salt, two PNGs
    assert [(p.name, s) for p in files for s in secrets if s.encode() in p.read_bytes()] == []
    assert main(argv[:-2] + ['--salt', 'k2']) == 2  # another salt would change the ids
    assert '--salt differs from the salt recorded in' in capsys.readouterr().err
    assert main(argv[:-2]) == 0 and json.loads(capsys.readouterr().out)['resumed'] == 2  # the recorded salt


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
