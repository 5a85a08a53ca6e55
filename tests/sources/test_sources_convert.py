"""Tests of fundusexpert_plugin/cli/convert.py: the ``fundusexpert data convert`` sub-command."""
import argparse
import json
from pathlib import Path

import pytest

from fundusexpert_plugin.cli import convert
from fundusexpert_plugin.cli.main import main
from fundusexpert_plugin.core.record import read_records

SAMPLE = Path(__file__).resolve().parents[2] / 'fundusexpert_plugin' / 'sample'


def _run(*argv):
    return main(['data', 'convert', *(str(a) for a in argv)])


def test_every_format_has_a_sub_parser_with_out_and_lenient():
    parser = argparse.ArgumentParser()
    convert.add_arguments(parser)
    assert set(convert.FORMATS) >= {'idrid-grading', 'idrid-segmentation', 'ddr-grading', 'ddr-segmentation',
                                    'ddr-detection', 'aptos', 'eyepacs', 'messidor', 'messidor2', 'refuge',
                                    'drishti-gs', 'adam', 'palm', 'odir', 'e-ophtha', 'yolo', 'coco', 'masks', 'csv'}
    with pytest.raises(SystemExit):
        parser.parse_args(['yolo', '--images', 'a', '--labels', 'b', '--out', 'o'])  # generic: --source-dataset


def test_yolo_sample_to_records_with_relative_paths_that_build_reads(tmp_path, capsys):
    out = tmp_path / 'records' / 'codras.jsonl'
    assert _run('yolo', '--images', SAMPLE / 'images', '--labels', SAMPLE / 'labels_yolo', '--out', out,
                '--source-dataset', 'IDRiD via CODRAS', '--licence', 'CC BY-SA 4.0',
                '--annotated-labels', 'classes', '--laterality-from-disc') == 0
    printed = capsys.readouterr().out
    assert '12 records written; 0 bad items skipped' in printed
    # the photos lie outside the records folder: the next step is told their folder
    import os
    hint = (f'  the images lie outside {out.parent}: give their folder to the next step, e.g. fundusexpert data '
            f'build --records {out} --image-root {os.path.relpath(SAMPLE / "images")} --out fundusgen')
    assert hint in printed.splitlines()
    first = json.loads(out.read_text().splitlines()[0])
    assert not Path(first['image']).is_absolute() and first['image'].startswith('..')
    recs = list(read_records(out))
    assert len(recs) == 12 and all(r.image_path(out.parent).is_file() for r in recs)
    assert recs[0].provenance.licence == 'CC BY-SA 4.0' and recs[0].laterality_source == 'optic_disc_position'

    from fundusexpert_plugin.build import build_fundusgen
    # the photos live outside the records folder: their folder is the dataset folder
    summary = build_fundusgen(recs[:2], tmp_path / 'built', image_dir=out.parent, image_root=SAMPLE, languages=['en'])
    assert summary.records_used == 2 and summary.rows_per_task


def test_bad_row_exits_2_with_the_location_and_lenient_skips_it(tmp_path, make_image, make_text, capsys):
    make_image(tmp_path / 'train_images' / 'a1.png', 64, 48)
    make_image(tmp_path / 'train_images' / 'a2.png', 64, 48)
    csv = make_text(tmp_path / 'train.csv', 'id_code,diagnosis\na1,1\na2,9\n')
    out = tmp_path / 'aptos.jsonl'
    assert _run('aptos', '--images', tmp_path / 'train_images', '--csv', csv, '--out', out) == 2
    assert "train.csv:3: column 'diagnosis' = '9': unknown grade" in capsys.readouterr().err
    assert not out.exists()
    assert _run('aptos', '--images', tmp_path / 'train_images', '--csv', csv, '--out', out, '--lenient',
                '--absolute-paths') == 0
    printed = capsys.readouterr().out
    assert '1 records written; 1 bad items skipped (--lenient)' in printed and "'9'" in printed
    assert 'image-root' not in printed                    # the images lie inside the records file's folder
    (rec,) = read_records(out)
    assert Path(rec.image).is_absolute() and rec.provenance.source_dataset == 'APTOS 2019 Blindness Detection'


def test_nothing_to_write_exits_1_and_duplicate_ids_exit_2(tmp_path, make_image, make_text, capsys):
    make_image(tmp_path / 'train' / 'x.jpg', 64, 48)
    txt = make_text(tmp_path / 'train.txt', 'x.jpg 5\n')
    assert _run('ddr-grading', '--images', tmp_path / 'train', '--grades', txt, '--out', tmp_path / 'o.jsonl') == 1
    assert 'DDR grade 5 (ungradable)' in capsys.readouterr().err
    make_image(tmp_path / 'train' / 'sub' / 'x.png', 64, 48)
    csv = make_text(tmp_path / 'labels.csv', 'image,dr_grade,record_id\ntrain/x.jpg,1,x\ntrain/sub/x.png,2,x\n')
    assert _run('csv', '--csv', csv, '--source-dataset', 'clinic', '--out', tmp_path / 'o.jsonl') == 2
    assert f"{csv}:3: record_id 'x' already given at {csv}:2" in capsys.readouterr().err


def test_a_header_only_table_says_which_inputs_held_nothing(tmp_path, make_text, capsys):
    (tmp_path / 'imgs').mkdir()
    csv = make_text(tmp_path / 'train.csv', 'id_code,diagnosis\n')
    assert _run('aptos', '--images', tmp_path / 'imgs', '--csv', csv, '--out', tmp_path / 'o.jsonl') == 1
    assert capsys.readouterr().err.splitlines()[0] == (f'fundusexpert: nothing to write to {tmp_path / "o.jsonl"}: the '
                                                       f'inputs ({tmp_path / "imgs"}, {csv}) gave no row or image to '
                                                       'convert')
    # a row whose image is missing from an empty folder says the folder holds no image file
    make_text(csv, 'id_code,diagnosis\nabc,2\n')
    assert _run('aptos', '--images', tmp_path / 'imgs', '--csv', csv, '--out', tmp_path / 'o.jsonl') == 2
    assert capsys.readouterr().err == (f"fundusexpert: error: {csv}:2: id_code = 'abc': no file of that name under "
                                       f"{tmp_path / 'imgs'} (it holds no file ending in .bmp, .gif, .jpeg, .jpg, "
                                       ".png, .tif, .tiff, .webp)\n")


def test_label_csv_ids_keep_the_extension_and_a_repeat_names_the_csv_lines(tmp_path, make_image, make_text, capsys):
    make_image(tmp_path / 'a.jpg', 64, 48)
    make_image(tmp_path / 'a.png', 64, 48)
    csv = make_text(tmp_path / 'labels.csv', 'image,dr_grade\na.jpg,1\na.png,2\n')
    out = tmp_path / 'out.jsonl'
    assert _run('csv', '--csv', csv, '--source-dataset', 'clinic', '--out', out) == 0, capsys.readouterr().err
    assert [(r.record_id, r.image_labels) for r in read_records(out)] == [('a.jpg', {'dr_grade': '1'}),
                                                                        ('a.png', {'dr_grade': '2'})]
    make_text(csv, 'image,dr_grade\na.jpg,1\na.png,2\na.jpg,3\n')
    assert _run('csv', '--csv', csv, '--source-dataset', 'clinic', '--out', out) == 2
    err = capsys.readouterr().err
    assert err == (f"fundusexpert: error: {csv}:4: record_id 'a.jpg' already given at {csv}:2; ids must be unique "
                   "within a dataset\n")


def test_label_csv_sha256_mismatch_is_one_line_naming_the_csv_line(tmp_path, make_image, make_text, capsys):
    make_image(tmp_path / 'a.jpg', 64, 48)
    csv = make_text(tmp_path / 'labels.csv', f'image,dr_grade,sha256\na.jpg,1,{"f" * 64}\n')
    assert _run('csv', '--csv', csv, '--source-dataset', 'clinic', '--out', tmp_path / 'o.jsonl') == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f'fundusexpert: error: {csv}:2: image: ')
    assert f'does not match the recorded {"f" * 64}' in err and 'not a record field' not in err


def test_an_id_prefix_keeps_two_datasets_apart_in_one_records_file(tmp_path, make_image, make_text, capsys):
    for name in ('refuge', 'palm'):
        make_image(tmp_path / name / 'V0001.jpg', 64, 48)
        make_text(tmp_path / f'{name}.txt', 'V0001.jpg 2\n')
        assert _run('ddr-grading', '--images', tmp_path / name, '--grades', tmp_path / f'{name}.txt',
                    '--id-prefix', f'{name}-', '--out', tmp_path / f'{name}.jsonl') == 0
    ids = [r.record_id for name in ('refuge', 'palm') for r in read_records(tmp_path / f'{name}.jsonl')]
    assert ids == ['refuge-V0001', 'palm-V0001']
    capsys.readouterr()
    assert _run('ddr-grading', '--images', tmp_path / 'palm', '--grades', tmp_path / 'palm.txt',  # a usage error:
                '--id-prefix', '../x', '--out', tmp_path / 'x.jsonl') == 2   # ids name files, no path separator
    assert "--id-prefix: '../x': expected letters, digits" in capsys.readouterr().err


def test_mask_clusters_beyond_max_boxes_are_counted_in_the_summary(tmp_path, make_image, make_mask, capsys):
    images, gt = tmp_path / 'img', tmp_path / 'gt'
    make_image(images / 'IDRiD_01.jpg', 1200, 100)
    # twelve 12x12 exudates 100 px apart (> eps 50 px), drawn in red as IDRiD does: 12 clusters of area 121 px^2
    spots = [(20 + 100 * k, 40, 32 + 100 * k, 52) for k in range(12)]
    make_mask(gt / '3. Hard Exudates' / 'IDRiD_01_EX.tif', spots, 1200, 100, colour=(255, 0, 0))
    out = tmp_path / 'r.jsonl'
    assert _run('idrid-segmentation', '--images', images, '--masks', gt, '--out', out) == 0
    printed = capsys.readouterr().out
    assert ('  left out (2x): hard_exudates: mask cluster beyond the largest 10 (--max-boxes); class not listed '
            'as annotated for that image') in printed.splitlines()
    (rec,) = read_records(out)
    assert len(rec.boxes('hard_exudates')) == 10 and 'hard_exudates' not in rec.provenance.annotated_labels
    assert rec.provenance.region_counts == {'hard_exudates': 12}
    assert _run('idrid-segmentation', '--images', images, '--masks', gt, '--out', out, '--max-boxes', '12') == 0
    assert 'beyond the largest' not in capsys.readouterr().out
    (rec,) = read_records(out)
    assert len(rec.boxes('hard_exudates')) == 12 and 'hard_exudates' in rec.provenance.annotated_labels
    assert rec.provenance.region_counts == {}


def test_messidor2_reads_the_kaggle_preprocess_csv(tmp_path, make_image, make_text, capsys):
    pre = tmp_path / 'messidor-2' / 'messidor-2' / 'preprocess'
    make_image(pre / '20051020_43808_0100_PP.png', 64, 48)
    csv = make_text(tmp_path / 'messidor_data.csv', 'id_code,diagnosis,adjudicated_dme,adjudicated_gradable\n'
                                                    '20051020_43808_0100_PP.png,2,0,1\n')
    out = tmp_path / 'm.jsonl'
    assert _run('messidor2', '--images', pre, '--csv', csv, '--out', out) == 0
    assert '1 records written' in capsys.readouterr().out
    (rec,) = read_records(out)
    assert (rec.record_id, rec.image_labels) == ('20051020_43808_0100_PP', {'dr_grade': '2'})
