"""Fundus-Engine on Ray Data (engine/cluster.py): same files as the single-process run, resumable."""
import functools
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from fundusexpert_plugin.engine import FundusEngine
from fundusexpert_plugin.engine.batch import merge_shards, run_engine
from fundusexpert_plugin.core.images import list_images
from fundusexpert_plugin.sample import SAMPLE_DIR

from fundusexpert_plugin.testing.fake_detector import FakeDetector

ray = pytest.importorskip('ray', reason="the optional `cluster` extra (pip install 'ray[data]') is not installed")
pytest.importorskip('ray.data', reason="Ray is installed without Ray Data (pip install 'ray[data]')")


@pytest.fixture(scope='module')
def local_ray():
    """A small local Ray instance for this module (2 CPUs, no dashboard)."""
    started = not ray.is_initialized()
    if started:
        # the factories below live in this test package: let the workers import it the way pytest did
        import_root = Path(__file__).resolve().parents[len(__name__.split('.')) - 1]
        pythonpath = os.pathsep.join(p for p in (str(import_root), os.environ.get('PYTHONPATH')) if p)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={'env_vars': {'PYTHONPATH': pythonpath}})
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture
def photos(tmp_path):
    """The 12 bundled photographs, one greyscale photograph (converted copy) and one broken file."""
    folder = tmp_path / 'photos'
    shutil.copytree(SAMPLE_DIR / 'images', folder)
    Image.new('L', (120, 90), 90).save(folder / 'grey.png')
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8 broken')
    return folder


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _make_engine():
    return FundusEngine(FakeDetector(), detector_name='fake')


def test_ray_run_writes_what_the_single_process_run_writes_and_resumes(local_ray, photos, tmp_path):
    from fundusexpert_plugin.engine.ray_runner import run_engine_ray
    images = list_images(photos)
    single = run_engine(_make_engine(), images, tmp_path / 'single', image_root=photos, progress=False)
    expected = merge_shards(tmp_path / 'single').read_text()
    factory = functools.partial(FundusEngine, FakeDetector(), detector_name='fake')  # any picklable factory

    summaries = run_engine_ray(factory, images, tmp_path / 'ray', num_actors=2, batch_size=3, num_shards=3,
                               image_root=photos)

    # merged records: identical bytes (sorted by id, one line per photograph)
    assert (tmp_path / 'ray' / 'records.jsonl').read_text() == expected
    assert len(expected.splitlines()) == 13
    # shard files as `engine run --shard i/3` would write them: by the stable hash of each photograph's key
    for i in range(3):
        run_engine(_make_engine(), images, tmp_path / 'local3', shard_spec=(i, 3), image_root=photos, progress=False)
        ids = sorted(row['record_id'] for row in _rows(tmp_path / 'ray' / f'records-{i}-of-3.jsonl'))
        assert ids == sorted(row['record_id'] for row in _rows(tmp_path / 'local3' / f'records-{i}-of-3.jsonl'))
        summary = json.loads((tmp_path / 'ray' / f'summary-{i}-of-3.json').read_text())
        assert summary == json.loads((tmp_path / 'local3' / f'summary-{i}-of-3.json').read_text())
    shard1 = {row['record_id'] for row in _rows(tmp_path / 'ray' / 'records-1-of-3.jsonl')}
    assert shard1 == {'0001', '0005', '0006', '0007', '0008', '0013', '0049'}  # sha256(stem)[:8] % 3 == 1
    skipped = [row for i in range(3) for row in _rows(tmp_path / 'ray' / f'skipped-{i}-of-3.jsonl')]
    assert skipped == _rows(tmp_path / 'single' / 'skipped-0-of-1.jsonl')
    assert [s['image_key'] for s in skipped] == ['broken']
    assert sorted(summaries) == ['0/3', '1/3', '2/3']
    assert sum(s.written for s in summaries.values()) == single.written == 13
    assert sum(s.converted for s in summaries.values()) == single.converted == 1
    findings = {}
    for s in summaries.values():
        for label, n in s.findings.items():
            findings[label] = findings.get(label, 0) + n
    assert findings == single.findings
    # the converted greyscale photograph was saved by an actor where its record points
    grey = next(row for row in _rows(tmp_path / 'ray' / 'records.jsonl') if row['record_id'] == 'grey')
    assert grey['image'] == 'images/grey.png' and (tmp_path / 'ray' / grey['image']).exists()

    # a rerun finds everything done (no Ray work) and writes the same files
    again = run_engine_ray(factory, images, tmp_path / 'ray', num_actors=2, batch_size=3, num_shards=3,
                           image_root=photos)
    assert sum(s.written for s in again.values()) == 0 and sum(s.resumed for s in again.values()) == 13
    assert sum(s.retried for s in again.values()) == 1                   # the broken file, skipped again
    assert sum(s.records for s in again.values()) == 13 and (tmp_path / 'ray' / 'records.jsonl').read_text() == expected
    assert skipped == [row for i in range(3) for row in _rows(tmp_path / 'ray' / f'skipped-{i}-of-3.jsonl')]


def test_ray_run_refuses_other_record_options_before_starting_ray(tmp_path):
    from fundusexpert_plugin.core.errors import FundusDataError
    from fundusexpert_plugin.engine.batch import run_options
    from fundusexpert_plugin.engine.ray_runner import run_engine_ray
    from fundusexpert_plugin.engine.spec import EngineSpec
    photo = [SAMPLE_DIR / 'images' / '0003.jpg']
    run_engine(_make_engine(), photo, tmp_path, options=run_options(EngineSpec(source_dataset='IDRiD')), progress=False)
    with pytest.raises(FundusDataError, match=r'\(--source-dataset "IDRiD" -> "DDR"\); give a new --out'):
        run_engine_ray(EngineSpec(source_dataset='DDR'), photo, tmp_path)   # options taken from the spec


def test_ray_run_rejects_bad_sizes_before_starting_ray(tmp_path):
    from fundusexpert_plugin.engine.ray_runner import run_engine_ray
    with pytest.raises(ValueError, match=r'num_actors = 0; expected >= 1'):
        run_engine_ray(_make_engine, [], tmp_path, num_actors=0)
