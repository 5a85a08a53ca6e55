"""A folder of fake clinical DICOM photographs -> records -> FundusGen, with no identifying value in any output."""
import argparse
import json

import numpy as np
import pydicom
import pytest
from PIL import Image

from fundusexpert_plugin.build import build_fundusgen
from fundusexpert_plugin.cli import deidentify
from fundusexpert_plugin.cli.main import main
from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.record import read_records
from fundusexpert_plugin.sample import SAMPLE_DIR
from fundusexpert_plugin.testing.fake_dicom import FAKE_PATIENT, write_fake_dicom

# name -> (write_fake_dicom options, expected laterality)
FILES = {
    'native_rgb.dcm': ({'image_laterality': 'L'}, 'left'),
    'native_ybr422.dcm': ({'photometric': 'YBR_FULL_422', 'image_laterality': 'R'}, 'right'),
    'jpeg_ybr422.dcm': ({'photometric': 'YBR_FULL_422', 'jpeg': True, 'image_laterality': None,
                         'series_laterality': 'R'}, 'right'),
    'jpeg_rgb': ({'jpeg': True, 'image_laterality': 'L'}, 'left'),  # no suffix: found by content
    'multiframe.dcm': ({'frames': 2, 'image_laterality': 'L'}, 'left'),
    'burned_in.dcm': ({'burned_in': True}, None),
}


@pytest.fixture(scope='module')
def dicom_dir(tmp_path_factory):
    with Image.open(SAMPLE_DIR / 'images' / '0003.jpg') as im:
        rgb = np.asarray(im.convert('RGB').resize((536, 356)))
    folder = tmp_path_factory.mktemp('dicom') / 'in'
    (folder / 'sub').mkdir(parents=True)
    for name, (kw, _) in FILES.items():
        write_fake_dicom(folder / ('sub' if name.startswith('jpeg') else '') / name, rgb,
                         pixel_spacing_mm=(0.0105, 0.0104), **kw)
    (folder / 'notes.txt').write_text('not a DICOM file')
    return folder


def _secrets(folder):
    values = set(FAKE_PATIENT.values()) | {'DOE JANE', 'MRN-0042', '0042-7731'}
    for path in folder.rglob('*.dcm'):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        values |= {ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID}
    return values


def _convert(*argv):
    """``fundusexpert data convert dicom ARGV`` through the CLI and its error policy."""
    return main(['data', 'convert', 'dicom', *argv])


def _leaks(folder, secrets):
    found = []
    for path in folder.rglob('*'):
        if path.is_file():
            data = path.read_bytes()
            found += [(path.name, s) for s in secrets if s.encode() in data]
    return found


def test_burned_in_stops_a_strict_conversion(dicom_dir, tmp_path, capsys):
    assert _convert('--dicom', str(dicom_dir), '--out', str(tmp_path / 'r.jsonl')) == 2
    assert 'burned_in.dcm: BurnedInAnnotation (0028,0301) = YES' in capsys.readouterr().err


def test_records_and_fundusgen_carry_no_identifying_value(dicom_dir, tmp_path, capsys):
    out = tmp_path / 'records' / 'dicom.jsonl'
    assert _convert('--dicom', str(dicom_dir), '--out', str(out), '--lenient') == 0
    assert 'burned_in.dcm: BurnedInAnnotation' in capsys.readouterr().out  # listed as skipped
    records = list(read_records(out))
    assert len(records) == 5
    by_side = sorted(r.laterality for r in records)
    assert by_side == sorted(side for name, (_, side) in FILES.items() if side)
    for rec in records:
        assert (rec.width, rec.height) == (536, 356)
        assert rec.laterality_source == 'dicom' and rec.pixel_spacing_mm == (0.0105, 0.0104)
        assert rec.record_id.startswith('dcm-') and rec.image == f'images/{rec.record_id}.png'
        with Image.open(out.parent / rec.image) as im:
            assert im.size == (536, 356) and not im.info  # no text chunks, no EXIF
    summary = build_fundusgen(read_records(out), tmp_path / 'fundusgen', image_dir=out.parent, languages=['en'])
    assert summary.records_used == 5 and summary.rows_per_task['laterality'] == 5
    rows = [json.loads(line) for line in (tmp_path / 'fundusgen' / 'laterality.jsonl').read_text().splitlines()]
    assert sorted('left' in r['messages'][-1]['content'].lower() for r in rows) == [False, False, True, True, True]
    leaks = _leaks(tmp_path, _secrets(dicom_dir))
    assert not leaks
    assert not any(p.suffix == '.dcm' for p in tmp_path.rglob('*'))


def test_ids_are_stable_with_the_recorded_salt(dicom_dir, tmp_path, capsys):
    first, second = tmp_path / 'a' / 'r.jsonl', tmp_path / 'b' / 'r.jsonl'
    salt_file = tmp_path / 'salt.txt'
    for out in (first, second):
        assert _convert('--dicom', str(dicom_dir), '--out', str(out), '--lenient',
                                         '--salt-file', str(salt_file)) == 0
    ids = [sorted(r.record_id for r in read_records(p)) for p in (first, second)]
    assert ids[0] == ids[1]
    fresh = tmp_path / 'c' / 'r.jsonl'
    assert _convert('--dicom', str(dicom_dir), '--out', str(fresh), '--lenient') == 0
    assert (fresh.parent / 'dicom_salt.txt').read_text().strip() != salt_file.read_text().strip()
    assert not set(r.record_id for r in read_records(fresh)) & set(ids[0])
    assert _convert('--dicom', str(dicom_dir), '--out', str(first), '--lenient',
                                     '--salt-file', str(salt_file), '--salt', 'other') == 2
    assert '--salt differs from the salt recorded in' in capsys.readouterr().err


def test_deidentify_writes_copies_without_identifying_values(dicom_dir, tmp_path):
    parser = argparse.ArgumentParser()
    deidentify.add_arguments(parser)
    with pytest.raises(FundusDataError, match='burned_in.dcm: BurnedInAnnotation'):
        deidentify.run(parser.parse_args(['--dicom', str(dicom_dir), '--out', str(tmp_path / 'x')]))
    out = tmp_path / 'deid'
    assert deidentify.run(parser.parse_args(['--dicom', str(dicom_dir), '--out', str(out), '--lenient',
                                             '--seed', 's1'])) == 0
    copies = sorted(out.glob('*.dcm'))
    assert len(copies) == 5
    assert not _leaks(out, _secrets(dicom_dir))
    copies = [pydicom.dcmread(c) for c in copies]
    for ds in copies:
        assert ds.PatientIdentityRemoved == 'YES' and ds.PatientName != FAKE_PATIENT['PatientName']
        assert len(ds.pixel_array.shape) >= 3  # pixels kept
    # laterality kept: four files carry ImageLaterality (L, R, L, L), one only the series Laterality (R)
    assert sorted(ds.get('ImageLaterality') or ds.get('Laterality') for ds in copies) == ['L', 'L', 'L', 'R', 'R']


def _deid(*argv):
    return main(['data', 'deidentify', *argv])


def _one(tmp_path, name='a.dcm', **kw):
    with Image.open(SAMPLE_DIR / 'images' / '0003.jpg') as im:
        rgb = np.asarray(im.convert('RGB').resize((268, 178)))
    return write_fake_dicom(tmp_path / name, rgb, **kw)


def test_deidentify_refuses_cut_files_in_one_line_and_lenient_skips_them(tmp_path, capsys):
    folder = tmp_path / 'in'
    folder.mkdir()
    good = _one(folder, 'good.dcm')
    header = _one(folder, 'header.dcm')
    header.write_bytes(header.read_bytes()[:300])           # cut inside the header
    pixels = _one(folder, 'pixels.dcm')
    pixels.write_bytes(pixels.read_bytes()[:20_000])        # cut inside the pixel data
    assert _deid('--dicom', str(folder), '--out', str(tmp_path / 'x')) == 2
    assert capsys.readouterr().err == (f'fundusexpert: error: {header}: DICOM file ends before its PixelData '
                                       '(7FE0,0010): cut short or damaged\n')
    assert _deid('--dicom', str(folder), '--out', str(tmp_path / 'out'), '--lenient') == 0
    out, err = capsys.readouterr()
    assert out == f'{tmp_path / "out"}: 1 de-identified DICOM files written, 2 skipped\n'
    assert err.count('skipped: ') == 2 and 'pixels.dcm: PixelData (7FE0,0010) not decodable' in err
    assert 'Traceback' not in err
    (copy,) = (tmp_path / 'out').glob('*.dcm')
    assert pydicom.dcmread(copy).pixel_array.shape == pydicom.dcmread(good).pixel_array.shape


def test_deidentify_refuses_two_files_with_one_uid_and_skips_its_own_output(tmp_path, capsys):
    folder = tmp_path / 'in'
    folder.mkdir()
    a = _one(folder, 'A.dcm', sop_instance_uid='1.2.826.0.1.3680043.8.498.4242', image_laterality='L')
    b = _one(folder, 'B.dcm', sop_instance_uid='1.2.826.0.1.3680043.8.498.4242', image_laterality='R')
    assert _deid('--dicom', str(folder), '--out', str(tmp_path / 'x')) == 2
    assert capsys.readouterr().err == f'fundusexpert: error: {b}: SOPInstanceUID (0008,0018) repeats that of {a}\n'
    assert list((tmp_path / 'x').iterdir()) == []              # the stopped run removed the copy it wrote
    b.unlink()
    inside = folder / 'deid'
    for _ in range(2):                                       # a rerun does not copy its own copies
        assert _deid('--dicom', str(folder), '--out', str(inside), '--seed', 's') == 0
        assert capsys.readouterr().out == f'{inside}: 1 de-identified DICOM files written, 0 skipped\n'
    assert len(list(inside.iterdir())) == 1
    assert _deid('--dicom', str(folder), '--out', str(inside), '--seed', 'other') == 2   # another seed: refused
    assert 'would be a new copy beside them: another --seed' in capsys.readouterr().err
    assert len(list(inside.iterdir())) == 1
    assert _deid('--dicom', str(folder), '--out', str(inside)) == 2   # without the seed: other UIDs, a second copy
    assert capsys.readouterr().err == (f'fundusexpert: error: {inside}: holds 1 DICOM file(s) of an earlier run; '
                                       'without --seed the new copies get other UIDs and both would be kept: give '
                                       'an empty --out, or the earlier --seed (same seed, same file names)\n')
    assert _deid('--dicom', str(a), '--out', str(tmp_path / 'one')) == 0   # one file is accepted
    assert len(list((tmp_path / 'one').glob('*.dcm'))) == 1


def test_a_strict_conversion_that_stops_leaves_no_image_it_wrote(tmp_path, capsys, monkeypatch):
    from fundusexpert_plugin.core import images
    monkeypatch.setattr(images, 'MAX_PIXELS', images.MAX_PIXELS)          # --max-image-pixels below: restored
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', Image.MAX_IMAGE_PIXELS)
    folder = tmp_path / 'in'
    folder.mkdir()
    _one(folder, 'IM0001.dcm')
    bad = _one(folder, 'IM0002.dcm')
    bad.write_bytes(bad.read_bytes()[:300])
    out = tmp_path / 'out'
    assert _convert('--dicom', str(folder), '--out', str(out / 'r.jsonl')) == 2
    assert 'IM0002.dcm: DICOM file ends before its PixelData' in capsys.readouterr().err
    assert list((out / 'images').iterdir()) == [] and not (out / 'r.jsonl').exists()
    assert _convert('--dicom', str(folder / 'IM0001.dcm'), '--out', str(out / 'r.jsonl')) == 0   # one file
    assert len(list((out / 'images').iterdir())) == 1
    assert _convert('--dicom', str(tmp_path / 'in' / 'IM0001.dcm'), '--out', str(out / 'r.jsonl'),
                    '--max-image-pixels', '1000') == 2
    assert 'above the limit of 1000 pixels' in capsys.readouterr().err
    assert len(list((out / 'images').iterdir())) == 1      # the earlier run's image is kept


def test_undecodable_jpeg_pixels_give_one_line_without_pydicom_traceback(tmp_path, capsys):
    folder = tmp_path / 'in'
    folder.mkdir()
    path = _one(folder, 'j.dcm', jpeg=True)
    from pydicom.encaps import encapsulate, generate_frames
    ds = pydicom.dcmread(path)
    (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
    ds.PixelData = encapsulate([frame[:len(frame) // 2]])  # the JPEG stream cut in half, the DICOM file whole
    ds.save_as(path)
    assert _convert('--dicom', str(folder), '--out', str(tmp_path / 'o' / 'r.jsonl')) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'fundusexpert: error: {path}: PixelData (7FE0,0010) not decodable (TransferSyntaxUID '
                          '1.2.840.10008.1.2.4.50')
    assert err.count('\n') == 1


def test_the_command_line_shows_one_line_for_a_cut_jpeg_stream_and_the_traceback_only_with_v(tmp_path):
    import subprocess
    import sys
    from pydicom.encaps import encapsulate, generate_frames
    folder = tmp_path / 'in'
    folder.mkdir()
    path = _one(folder, 'j.dcm', jpeg=True)
    ds = pydicom.dcmread(path)
    (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
    half = frame[:len(frame) // 2]
    ds.PixelData = encapsulate([half + b'\0' * (len(half) % 2)])  # pydicom's Pillow decoder logs a traceback
    ds.save_as(path)
    argv = [sys.executable, '-m', 'fundusexpert_plugin.cli', 'data', 'convert', 'dicom', '--dicom', str(folder),
            '--out', str(tmp_path / 'o' / 'r.jsonl')]
    quiet = subprocess.run(argv, capture_output=True, text=True)
    assert quiet.returncode == 2
    assert quiet.stderr.count('\n') == 1 and quiet.stderr.startswith(f'fundusexpert: error: {path}: PixelData')
    loud = subprocess.run(argv[:3] + ['-v'] + argv[3:], capture_output=True, text=True)
    assert loud.returncode == 2 and 'Traceback' in loud.stderr
    lenient = subprocess.run(argv + ['--lenient'], capture_output=True, text=True)   # the skip: one line too
    assert 'Traceback' not in lenient.stderr
    (skip_line,) = [line for line in lenient.stderr.splitlines() if 'pillow:' in line or 'j.dcm' in line]
    assert skip_line.startswith(f'  skipped: {path}: PixelData (7FE0,0010) not decodable')
    import re
    assert re.search(r'all available plugins: \| pillow: image file is truncated \(\d+ bytes not processed\)\)$',
                     skip_line)
