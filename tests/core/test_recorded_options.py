"""Options recorded once per output folder and compared on reruns (engine folders, study folders)."""
import hashlib
import json

import pytest

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.recorded_options import check_recorded_options


def _check(path, options, has_outputs, **kw):
    return check_recorded_options(path, options, names={'a': '--a'}, has_outputs=has_outputs,
                                  advice='give a new --out', **kw)


def test_first_run_records_then_a_change_is_refused_once_outputs_exist(tmp_path):
    path = tmp_path / 'out' / 'opts.json'
    assert _check(path, {'a': 1, 'b': [1, 2]}, False) == path
    assert json.loads(path.read_text()) == {'a': 1, 'b': [1, 2]}
    _check(path, {'a': 2, 'b': [1, 2]}, False)                     # no output yet: replaced
    assert json.loads(path.read_text())['a'] == 2
    _check(path, {'a': 2, 'b': (1, 2)}, True)                      # compared after a JSON round trip
    with pytest.raises(FundusDataError) as err:
        _check(path, {'a': 3, 'c': 'x'}, True)
    assert str(err.value) == (f'{path}: the records in {path.parent} were made with other options '
                              '(--a 2 -> 3; b [1, 2] -> not recorded; c not recorded -> "x"); give a new --out')
    assert json.loads(path.read_text()) == {'a': 2, 'b': [1, 2]}   # left as it was


def test_an_engine_folder_of_an_earlier_version_resumes_and_loses_its_plain_path(tmp_path):
    from fundusexpert_plugin.engine.batch import check_run_options
    out = tmp_path / 'out'
    out.mkdir()
    photos = str(tmp_path / 'Doe_Jane')
    (out / 'engine_options.json').write_text(json.dumps({'images': photos, 'languages': ['en']}))
    (out / 'records-0-of-1.jsonl').write_text('{}\n')
    digest = hashlib.sha256(photos.encode()).hexdigest()
    check_run_options(out, {'images_sha256': digest, 'languages': ['en'], 'dicom_salt_sha256': None})
    recorded = json.loads((out / 'engine_options.json').read_text())
    assert recorded == {'images_sha256': digest, 'languages': ['en'], 'dicom_salt_sha256': None}
    assert 'Doe_Jane' not in (out / 'engine_options.json').read_text()
    with pytest.raises(FundusDataError, match=r'--images \(SHA-256 of its absolute path\)'):
        check_run_options(out, {'images_sha256': 'other', 'languages': ['en'], 'dicom_salt_sha256': None})
