"""FundusEngine on one photograph, and batch runs: resume, shards, merge, summary."""
import json

import pytest
from PIL import Image

from fundusexpert_plugin.build import build_fundusgen
from fundusexpert_plugin.engine import FundusEngine
from fundusexpert_plugin.engine.batch import merge_shard_files, merge_shards, run_engine, shard_from_env
from fundusexpert_plugin.detector.detect import Detection
from fundusexpert_plugin.core.images import list_images
from fundusexpert_plugin.core.record import read_records
from fundusexpert_plugin.sample import SAMPLE_DIR

from fundusexpert_plugin.testing.fake_detector import FakeDetector


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / 'photos'
    folder.mkdir()
    for i in range(5):
        Image.new('RGB', (100, 80), (40 * i, 20, 10)).save(folder / f'{i:02d}.jpg')
    Image.new('L', (100, 80), 90).save(folder / '05_grey.png')
    (folder / '06_broken.jpg').write_bytes(b'\xff\xd8 broken')
    return folder


def test_process_writes_detector_findings_with_provenance(photos, tmp_path):
    engine = FundusEngine(FakeDetector(extra=[Detection('optic_disc', (60, 10, 70, 20), 0.4),
                                              Detection('haemorrhages', (200, 10, 300, 20), 0.9)]),
                          detector_name='fake')
    rec = engine.process(photos / '00.jpg', out_dir=tmp_path / 'out')
    # second (lower-scored) disc dropped; the haemorrhage outside the 100 px wide image clipped to nothing
    assert [f.label for f in rec.findings] == ['optic_disc', 'hard_exudates']
    assert rec.findings[0].box_px == (10.0, 32.0, 25.0, 48.0) and rec.findings[0].source == 'detector'
    assert rec.findings[0].score == 0.9
    assert rec.laterality == 'left' and rec.laterality_source == 'optic_disc_position'
    assert rec.provenance.stages['localization'] == 'fake' and rec.provenance.annotated_labels == []
    assert rec.image == '../photos/00.jpg'


def test_converted_image_is_copied_without_metadata(photos, tmp_path):
    rec = FundusEngine(FakeDetector()).process(photos / '05_grey.png', out_dir=tmp_path / 'out')
    copy = tmp_path / 'out' / rec.image
    assert rec.image == 'images/05_grey.png' and rec.provenance.stages['image'] == 'L->RGB'
    with Image.open(copy) as im:
        assert im.mode == 'RGB' and not im.getexif() and im.size == (100, 80)


def test_a_record_id_leaving_the_output_folder_is_refused(photos, tmp_path):
    from fundusexpert_plugin.core.errors import FundusDataError
    engine = FundusEngine(FakeDetector())
    for bad in ('../../escaped', '/tmp/escaped', 'a/../../b', '..\\x'):
        with pytest.raises(FundusDataError, match=r"record_id .*: not a relative path inside the output folder"):
            engine.process(photos / '05_grey.png', out_dir=tmp_path / 'out', record_id=bad)
    assert not list(tmp_path.rglob('escaped*')) and not (tmp_path / 'b.png').exists()
    rec = engine.process(photos / '05_grey.png', out_dir=tmp_path / 'out', record_id='sub/05_grey')   # a relative id
    assert rec.image == 'images/sub/05_grey.png' and (tmp_path / 'out' / rec.image).is_file()


def test_a_kill_while_the_converted_copy_is_written_leaves_no_truncated_copy(photos, tmp_path, monkeypatch):
    def killed(self, fp, *args, **kwargs):          # half a PNG written, then the process is killed
        with open(fp, 'wb') as fh:
            fh.write(b'\x89PNG\r\n\x1a\n half')
        raise KeyboardInterrupt
    grey = [photos / '05_grey.png']
    with monkeypatch.context() as patch:
        patch.setattr(Image.Image, 'save', killed)
        with pytest.raises(KeyboardInterrupt):
            run_engine(FundusEngine(FakeDetector()), grey, tmp_path / 'out', image_root=photos, progress=False)
    assert not (tmp_path / 'out' / 'images' / '05_grey.png').exists()   # no copy without its record
    resumed = run_engine(FundusEngine(FakeDetector()), grey, tmp_path / 'out', image_root=photos, progress=False)
    assert (resumed.written, resumed.converted) == (1, 1)
    with Image.open(tmp_path / 'out' / 'images' / '05_grey.png') as im:
        assert im.size == (100, 80) and im.mode == 'RGB'


def test_no_optic_disc_keeps_record_without_laterality(photos, tmp_path):
    class NoDisc(FakeDetector):
        def predict(self, bgr):
            return [d for d in super().predict(bgr) if d.label_id != 'optic_disc']
    rec = FundusEngine(NoDisc()).process(photos / '01.jpg', out_dir=tmp_path / 'out')
    assert rec.laterality is None and rec.boxes('optic_disc') == []


def _lines(path):
    return path.read_text().splitlines()


def test_killed_run_resumes_to_the_uninterrupted_output(photos, tmp_path):
    images = list_images(photos)
    full = run_engine(FundusEngine(FakeDetector()), images, tmp_path / 'full', image_root=photos, progress=False)
    assert (full.written, full.skipped, full.converted) == (6, {'image_unreadable': 1}, 1)
    with pytest.raises(KeyboardInterrupt):
        run_engine(FundusEngine(FakeDetector(stop_after=3)), images, tmp_path / 'cut', image_root=photos,
                   progress=False)
    with (tmp_path / 'cut' / 'records-0-of-1.jsonl').open('a') as fh:
        fh.write('{"record_id": "half-writ')                     # a kill in the middle of a write
    resumed = run_engine(FundusEngine(FakeDetector()), images, tmp_path / 'cut', image_root=photos, progress=False)
    assert resumed.resumed == 3 and resumed.written == 3
    for name in ('records-0-of-1.jsonl', 'skipped-0-of-1.jsonl'):
        assert _lines(tmp_path / 'cut' / name) == _lines(tmp_path / 'full' / name)
    again = run_engine(FundusEngine(FakeDetector()), images, tmp_path / 'cut', image_root=photos, progress=False)
    # nothing duplicated; the broken photograph is tried again, and its unchanged skip is not repeated
    assert (again.written, again.resumed, again.retried) == (0, 6, 1)
    assert _lines(tmp_path / 'cut' / 'skipped-0-of-1.jsonl') == _lines(tmp_path / 'full' / 'skipped-0-of-1.jsonl')


def _summary(path):
    return json.loads(path.read_text())


def test_a_resumed_shard_summary_describes_the_shard_files_like_an_uninterrupted_run(photos, tmp_path):
    images = list_images(photos)
    run_engine(FundusEngine(FakeDetector()), images, tmp_path / 'full', image_root=photos, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_engine(FundusEngine(FakeDetector(stop_after=3)), images, tmp_path / 'cut', image_root=photos,
                   progress=False)
    run_engine(FundusEngine(FakeDetector()), images, tmp_path / 'cut', image_root=photos, progress=False)
    full = _summary(tmp_path / 'full' / 'summary-0-of-1.json')
    cut = _summary(tmp_path / 'cut' / 'summary-0-of-1.json')
    # 7 photographs: 6 records (FakeDetector: one disc and one exudate each, 05_grey converted), 1 broken
    assert full == {'shard': '0/1', 'images': 7, 'records': 6, 'skipped': {'image_unreadable': 1},
                    'no_optic_disc': 0, 'converted': 1, 'findings': {'hard_exudates': 6, 'optic_disc': 6},
                    'written': 6, 'resumed': 0, 'retried': 0}
    assert (cut['written'], cut['resumed'], cut['retried']) == (3, 3, 0)
    invocation = ('written', 'resumed', 'retried')
    assert {k: v for k, v in cut.items() if k not in invocation} == {k: v for k, v in full.items() if k not in invocation}


def test_a_skipped_photo_is_retried_and_its_record_replaces_the_skip(photos, tmp_path):
    images = list_images(photos)
    out = tmp_path / 'out'
    first = run_engine(FundusEngine(FakeDetector()), images, out, image_root=photos, progress=False)
    assert (first.records, first.skipped) == (6, {'image_unreadable': 1})
    Image.new('RGB', (100, 80), (90, 20, 10)).save(photos / '06_broken.jpg')   # the photograph is fixed
    second = run_engine(FundusEngine(FakeDetector()), images, out, image_root=photos, progress=False)
    assert (second.written, second.resumed, second.retried, second.records, second.skipped) == (1, 6, 1, 7, {})
    assert [json.loads(line)['record_id'] for line in _lines(out / 'records-0-of-1.jsonl')][-1] == '06_broken'
    merged = merge_shard_files(out)
    assert (merged.records, merged.skipped) == (7, {})
    assert _lines(out / 'skipped.jsonl') == []            # listed neither twice nor as skipped after it succeeded


def test_later_skips_of_a_photo_count_once_with_the_latest_reason(photos, tmp_path):
    images = list_images(photos)
    out = tmp_path / 'out'
    run_engine(FundusEngine(FakeDetector()), images, out, image_root=photos, progress=False)
    (photos / '06_broken.jpg').unlink()                                     # now missing instead of broken
    (photos / '06_broken.jpg').mkdir()
    summary = run_engine(FundusEngine(FakeDetector()), images, out, image_root=photos, progress=False)
    assert summary.retried == 1 and summary.skipped == {'image_unreadable': 1}
    lines = [json.loads(line) for line in _lines(out / 'skipped-0-of-1.jsonl')]
    assert [line['reason'][:14] for line in lines] == ['unreadable or ', 'is a folder, n']   # both attempts kept
    merge_shard_files(out)
    (merged,) = [json.loads(line) for line in _lines(out / 'skipped.jsonl')]
    assert merged['reason'] == 'is a folder, not an image file' and merged['category'] == 'image_unreadable'


def test_shards_stay_put_when_a_photo_is_added_between_shard_runs(photos, tmp_path):
    import hashlib
    (photos / '06_broken.jpg').unlink()
    (photos / '05_grey.png').unlink()
    out = tmp_path / 'out'
    four = list_images(photos)[1:]                                          # 01 .. 04
    run_engine(FundusEngine(FakeDetector()), four, out, shard_spec=(0, 2), image_root=photos, progress=False)
    five = list_images(photos)                                              # 00 is added first in the order
    run_engine(FundusEngine(FakeDetector()), five, out, shard_spec=(1, 2), image_root=photos, progress=False)
    merged = merge_shard_files(out)                                         # '00' falls in shard 1
    assert (merged.records, merged.duplicates) == (5, 0)
    again = run_engine(FundusEngine(FakeDetector()), five, out, shard_spec=(0, 2), image_root=photos, progress=False)
    assert (again.written, again.resumed) == (0, 1)
    assert [json.loads(line)['record_id'] for line in _lines(out / 'records.jsonl')] == ['00', '01', '02', '03', '04']

    def reference(key):  # first 8 bytes of SHA-256, big-endian, mod 2
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], 'big') % 2
    for i in range(2):
        ids = [json.loads(line)['record_id'] for line in _lines(out / f'records-{i}-of-2.jsonl')]
        assert sorted(ids) == [k for k in ('00', '01', '02', '03', '04') if reference(k) == i]
    assert sorted(reference(k) for k in ('00', '01', '02', '03', '04')) == [0, 1, 1, 1, 1]  # roughly balanced


def test_shards_split_the_folder_and_merge_back(photos, tmp_path):
    images = list_images(photos)
    single = run_engine(FundusEngine(FakeDetector()), images, tmp_path / 'one', image_root=photos, progress=False)
    for i in range(3):
        run_engine(FundusEngine(FakeDetector()), images, tmp_path / 'three', shard_spec=(i, 3), image_root=photos,
                   progress=False)
    assert merge_shards(tmp_path / 'three').read_text() == merge_shards(tmp_path / 'one').read_text()
    assert single.written == len(_lines(tmp_path / 'one' / 'records.jsonl')) == 6


def test_merge_refuses_an_incomplete_shard_set_unless_partial(photos, tmp_path, caplog):
    from fundusexpert_plugin.core.errors import FundusDataError
    images = list_images(photos)
    out = tmp_path / 'out'
    first = run_engine(FundusEngine(FakeDetector()), images, out, shard_spec=(0, 2), image_root=photos, progress=False)
    assert not list(out.glob('.running-*'))                      # the finished shard leaves no marker
    with pytest.raises(FundusDataError, match=r'the shards are incomplete: no files of shard\(s\) 1/2: run '
                                              r'`fundusexpert engine run --shard 1/2` with the same options first '
                                              r'\(engine merge --partial merges what is there\)'):
        merge_shard_files(out)
    assert not (out / 'records.jsonl').exists()
    caplog.clear()
    assert merge_shard_files(out, partial=True).records == first.records
    assert any(r.levelname == 'WARNING' and 'merge --partial: no files of shard(s) 1/2' in r.getMessage()
               for r in caplog.records)
    run_engine(FundusEngine(FakeDetector()), images, out, shard_spec=(1, 3), image_root=photos, progress=False)
    with pytest.raises(FundusDataError, match=r'shard files of different shard counts \(0/2, 1/3\)'):
        merge_shard_files(out)


def test_merge_refuses_a_shard_that_did_not_finish_or_is_running(photos, tmp_path, monkeypatch):
    import os
    import socket
    import subprocess
    import sys
    from fundusexpert_plugin.core.errors import FundusDataError
    images = list_images(photos)
    out = tmp_path / 'out'
    run_engine(FundusEngine(FakeDetector()), images, out, image_root=photos, progress=False)
    marker = out / '.running-0-of-1.json'
    # a run killed mid-shard leaves its marker; its process is gone
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    marker.write_text(json.dumps({'host': socket.gethostname(), 'pid': dead.pid}))
    with pytest.raises(FundusDataError, match=rf'shard 0/1 did not finish \(its last run, process {dead.pid}, no '
                                              r'longer running, was interrupted or stopped by an error\)'):
        merge_shard_files(out)
    marker.write_text(json.dumps({'host': 'node-7', 'pid': 1}))
    with pytest.raises(FundusDataError, match=r'shard 0/1 has not finished on the machine that runs it \(process 1 '
                                              r'on host node-7\)'):
        merge_shard_files(out)
    # a live writer on this machine: refused even with --partial (merging would remove its .part images)
    marker.write_text(json.dumps({'host': socket.gethostname(), 'pid': os.getpid()}))
    (out / 'images').mkdir(exist_ok=True)
    part = out / 'images' / '.x.png.1234.part'
    part.write_bytes(b'being written')
    with pytest.raises(FundusDataError, match=rf'shard 0/1 is being written now \(process {os.getpid()} on this '
                                              r'machine\); merge when it has finished'):
        merge_shard_files(out, partial=True)
    assert part.exists()
    # rerunning the shard completes it and removes the marker
    resumed = run_engine(FundusEngine(FakeDetector()), images, out, image_root=photos, progress=False)
    assert resumed.written == 0 and not marker.exists()
    assert merge_shard_files(out).records == 6 and not part.exists()


def test_a_shard_stopped_by_an_error_keeps_its_marker(photos, tmp_path):
    images = list_images(photos)

    class Broken(FakeDetector):
        def predict(self, bgr):
            raise RuntimeError('GPU fell off')
    with pytest.raises(RuntimeError):
        run_engine(FundusEngine(Broken()), images, tmp_path / 'out', image_root=photos, progress=False)
    assert (tmp_path / 'out' / '.running-0-of-1.json').exists()


def test_shard_spec_from_flag_or_torchrun(monkeypatch):
    assert shard_from_env('1/4') == (1, 4)
    monkeypatch.setenv('RANK', '2')
    monkeypatch.setenv('WORLD_SIZE', '3')
    assert shard_from_env(None) == (2, 3)
    with pytest.raises(ValueError, match='expected i/n'):
        shard_from_env('2-3')


def test_engine_records_feed_the_builder(tmp_path):
    """Real sample photographs -> engine (fake detector) -> records -> FundusGen task files."""
    images = sorted((SAMPLE_DIR / 'images').glob('00*.jpg'))[:3]
    run_engine(FundusEngine(FakeDetector()), images, tmp_path / 'eng', image_root=SAMPLE_DIR / 'images', progress=False)
    path = merge_shards(tmp_path / 'eng')
    records = list(read_records(path))
    # engine records point at the photos where they are: that folder is the dataset folder
    summary = build_fundusgen(records, tmp_path / 'fg', image_dir=path.parent, image_root=SAMPLE_DIR, languages=['en'])
    assert summary.records_used == 3
    row = json.loads(_lines(tmp_path / 'fg' / 'grounded_report.jsonl')[0])
    assert row['objects']['ref'][0] == 'optic disc'
    assert 'No haemorrhages' not in row['messages'][1]['content']   # a detector miss is not an absence


def test_record_ids_that_repeat_name_both_files_and_the_cause(tmp_path):
    import numpy as np
    from PIL import Image

    from fundusexpert_plugin.core.errors import FundusDataError
    from fundusexpert_plugin.engine.batch import record_ids
    from fundusexpert_plugin.testing.fake_dicom import write_fake_dicom
    rgb = np.zeros((40, 60, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / 'a.jpg')
    Image.fromarray(rgb).save(tmp_path / 'a.png')
    with pytest.raises(FundusDataError, match=r"a\.jpg and .*a\.png share the record id 'a' \(the same path without suffix\)"):
        record_ids([tmp_path / 'a.jpg', tmp_path / 'a.png'], tmp_path)
    (tmp_path / 'b').mkdir()
    Image.fromarray(rgb).save(tmp_path / 'b' / 'a.jpg')
    with pytest.raises(FundusDataError, match=r"share the record id 'a' \(the same file stem \(a list names photos"):
        record_ids([tmp_path / 'a.jpg', tmp_path / 'b' / 'a.jpg'], None)          # a list: ids are stems
    with pytest.raises(FundusDataError, match=r"share the record id 'a' \(the same file listed twice; remove one"):
        record_ids([tmp_path / 'a.jpg', tmp_path / 'a.jpg'], None)
    one = write_fake_dicom(tmp_path / 'x.dcm', rgb, sop_instance_uid='1.2.826.0.1.3680043.8.498.1')
    two = write_fake_dicom(tmp_path / 'copy.dcm', rgb, sop_instance_uid='1.2.826.0.1.3680043.8.498.1')
    with pytest.raises(FundusDataError, match=r"x\.dcm and .*copy\.dcm share the record id 'dcm-[0-9a-f]+' "
                                              r"\(the same SOP Instance UID"):
        record_ids([one, two], tmp_path, dicom_salt='s')


def test_merge_warns_when_duplicate_ids_differ_and_writes_the_skipped_list(photos, tmp_path, caplog):
    images = list_images(photos)
    out = tmp_path / 'out'
    run_engine(FundusEngine(FakeDetector()), images, out, image_root=photos, progress=False)
    rows = [json.loads(line) for line in _lines(out / 'records-0-of-1.jsonl')]
    same, changed = rows[0], dict(rows[1])           # '00' unchanged, '01' with another licence
    changed['provenance'] = {**changed['provenance'], 'licence': 'CC BY 4.0'}
    (out / 'records-0-of-2.jsonl').write_text(json.dumps(same) + '\n' + json.dumps(changed) + '\n')
    caplog.clear()
    merged = merge_shard_files(out, partial=True)    # 0/2 beside 0/1, and no 1/2: refused without --partial
    assert (merged.records, merged.duplicates, merged.differing, merged.first_differing) == (6, 2, 1, '01')
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING' and 'partial' not in r.getMessage()]
    assert warning.startswith("merge: 1 record id(s) appear in several lines with different contents (first: '01', "
                              'kept records-0-of-1.jsonl:2, dropped records-0-of-2.jsonl:2)')
    kept = {json.loads(line)['record_id']: json.loads(line) for line in _lines(out / 'records.jsonl')}
    assert kept['01']['provenance']['licence'] == rows[1]['provenance']['licence'] != 'CC BY 4.0'   # the first shard file in name order wins
    assert merged.skipped == {'image_unreadable': 1}
    assert [json.loads(line)['image_key'] for line in _lines(out / 'skipped.jsonl')] == ['06_broken']
    assert merged.line() == '6 records, 1 skipped (image_unreadable 1), 2 duplicate record ids dropped'


def test_run_engine_refuses_one_path_given_as_the_images(photos, tmp_path):
    with pytest.raises(TypeError, match=r"images: a sequence of photograph paths, got one path .*00\.jpg"):
        run_engine(FundusEngine(FakeDetector()), str(photos / '00.jpg'), tmp_path / 'out', progress=False)
