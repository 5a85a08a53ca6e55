"""``fundusexpert data validate``: each skip reported once, the folder and records flags of ``data build``,
and image-level label CSVs (the ``data convert csv`` layout)."""
import json

from PIL import Image

from fundusexpert_plugin.cli.main import main


def _image(path, size=(50, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', size, (120, 0, 0)).save(path)
    return path


def _validate(capsys, *argv):
    rc = main(['data', 'validate', *(str(a) for a in argv)])
    out = capsys.readouterr()
    assert 'Traceback' not in out.out + out.err
    return rc, out.out, out.err


def _records_file(tmp_path, images):
    """Two records, the second with a box outside its 50x40 image; images under ``images``."""
    _image(images / 'a.jpg')
    _image(images / 'b.jpg')
    prov = {'source_dataset': 's', 'licence': 'l', 'attribution': '', 'annotated_labels': []}
    rows = [{'record_id': 'a', 'image': 'a.jpg', 'width': 50, 'height': 40, 'findings': [], 'image_labels':
             {'dr_grade': '1'}, 'provenance': prov},
            {'record_id': 'b', 'image': 'b.jpg', 'width': 50, 'height': 40, 'image_labels': {'dr_grade': '0'},
             'findings': [{'label': 'optic_disc', 'box_px': [10, 10, 20, 20], 'source': 'annotation'},
                          {'label': 'optic_disc', 'box_px': [10, 10, 90, 20], 'source': 'annotation'}],
             'provenance': prov}]
    path = images / 'records.jsonl'
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows), encoding='utf-8')
    return path


def test_each_skipped_item_is_reported_once(tmp_path, capsys, caplog):
    _image(tmp_path / 'a.jpg')
    ann = tmp_path / 'annotations.jsonl'
    ann.write_text(json.dumps({'image': 'a.jpg', 'width': 50, 'height': 40, 'annotations': [
        {'label': 'optic_disc', 'bbox_xyxy': [10, 10, 20, 20]},
        {'label': 'optic_disc', 'bbox_xyxy': [30, 30, 20, 20]}]}) + '\n' + '{not json\n', encoding='utf-8')
    with caplog.at_level('WARNING'):
        rc, out, err = _validate(capsys, ann)
    assert rc == 1
    text = out + err + caplog.text
    assert text.count('inverted or zero-area box') == 1, text
    assert text.count('not valid JSON') == 1, text
    assert f'  skipped: {ann}:2: not valid JSON' in out


def test_records_flag_and_image_root_alias_read_records_as_data_build_does(tmp_path, capsys, caplog):
    path = _records_file(tmp_path, tmp_path / 'ds')
    expected = f'{path} (records): 2 records, 1 boxes would be written'
    with caplog.at_level('WARNING'):
        rc, out, _ = _validate(capsys, '--records', path, '--image-root', tmp_path / 'ds')
    assert rc == 1 and out.splitlines()[0] == expected, out
    assert 'would skip 1 boxes/items: box_outside_image' in out
    assert (out + caplog.text).count('findings[1].box_px') == 1, out + caplog.text
    assert _validate(capsys, path, '--images', tmp_path / 'ds')[1].splitlines()[0] == expected
    # --image-root is the dataset folder every image must lie in, as in data build
    rc, _, err = _validate(capsys, '--records', path, '--image-root', tmp_path / 'elsewhere')
    assert rc == 2 and err == f"fundusexpert: error: --images/--image-root: folder not found: {tmp_path / 'elsewhere'}\n"
    (tmp_path / 'elsewhere').mkdir()
    rc, out, err = _validate(capsys, '--records', path, '--image-root', tmp_path / 'elsewhere')
    assert rc == 2 and f'{path}: read 2 lines/items, kept no record' in err and "'image_path_refused': 2}" in err
    assert (f"  skipped: {path}:1: record 'a': image = 'a.jpg': path outside the dataset folder {tmp_path / 'elsewhere'}; "
            "refused (give the folder that holds the images as --image-root, or pass --allow-outside-root for a trusted "
            "file)") in out.splitlines()
    rc, _, err = _validate(capsys, '--records', path, path)
    assert rc == 2 and 'give the records file either as PATH or as --records, not both' in err
    rc, _, err = _validate(capsys, '--records', path, '--format', 'coco')
    assert rc == 2 and '--records reads FundusGen records (--format records); got --format coco' in err
    rc, _, err = _validate(capsys)
    assert rc == 2 and 'give the annotation PATH (or --records FILE)' in err


def test_help_says_images_and_image_root_are_the_same_folder(capsys):
    assert main(['data', 'validate', '--help']) == 0
    text = ' '.join(capsys.readouterr().out.split())
    assert '--images IMAGES, --image-root IMAGES' in text
    assert 'the same folder as data build --image-root' in text
    assert '--records RECORDS' in text and 'as data build --records' in text


def test_label_csv_is_recognised_and_its_bad_cells_counted(tmp_path, capsys):
    _image(tmp_path / 'a.jpg')
    _image(tmp_path / 'a.png')
    csv = tmp_path / 'labels.csv'
    csv.write_text('image,dr_grade,dme_grade\na.jpg,2,1\na.png,5,0\n', encoding='utf-8')
    rc, out, _ = _validate(capsys, csv)
    assert rc == 1 and out.splitlines()[0] == f'{csv} (csv): 2 records, 0 boxes would be written', out
    assert '  would skip 1 boxes/items: unknown_grade' in out
    assert f"  skipped: {csv}:3: column 'dr_grade' = '5': unknown grade; expected one of [0, 1, 2, 3, 4]" in out
    csv.write_text('image,dr_grade\na.jpg,2\na.png,1\n', encoding='utf-8')
    rc, out, _ = _validate(capsys, csv, '--format', 'csv')
    assert rc == 0 and out == f'{csv} (csv): 2 records, 0 boxes would be written\n'


def test_an_unrecognised_file_names_every_format_validate_reads(tmp_path, capsys):
    other = tmp_path / 'notes.csv'
    other.write_text('patient,comment\n1,x\n', encoding='utf-8')
    rc, _, err = _validate(capsys, other)
    assert rc == 2
    assert err.strip() == (f"fundusexpert: error: {other}: not a recognised annotation layout; pass --format "
                           "(one of ['box-csv', 'coco', 'codras', 'csv', 'masks', 'records', 'yolo'])")


def test_a_label_workbook_is_recognised_as_a_label_csv_is(tmp_path, capsys):
    import openpyxl
    import xlwt
    _image(tmp_path / 'photos' / 'a.jpg')
    _image(tmp_path / 'photos' / 'b.jpg')
    rows = [['image', 'dr_grade', 'laterality'], ['a.jpg', 2, 'OD'], ['b.jpg', 7, 'left']]
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    book.save(tmp_path / 'labels.xlsx')
    legacy = xlwt.Workbook()
    sheet = legacy.add_sheet('Feuil1')
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    legacy.save(str(tmp_path / 'labels.xls'))
    for table in (tmp_path / 'labels.xlsx', tmp_path / 'labels.xls'):
        rc, out, _ = _validate(capsys, table, '--images', tmp_path / 'photos')
        assert rc == 1 and out.splitlines()[0] == f'{table} (csv): 2 records, 0 boxes would be written', out
        assert f"  skipped: {table}:3: column 'dr_grade' = '7': unknown grade; expected one of [0, 1, 2, 3, 4]" in out
    # a workbook with no label column is not a label table; an unreadable one says so
    book = openpyxl.Workbook()
    book.active.append(['patient', 'comment'])
    book.save(tmp_path / 'notes.xlsx')
    rc, _, err = _validate(capsys, tmp_path / 'notes.xlsx')
    assert rc == 2 and 'notes.xlsx: not a recognised annotation layout; pass --format' in err
    (tmp_path / 'broken.xlsx').write_bytes(b'not a zip file')
    rc, _, err = _validate(capsys, tmp_path / 'broken.xlsx')
    assert rc == 2 and err.strip().startswith(f'fundusexpert: error: {tmp_path / "broken.xlsx"}: not a readable '
                                              'xlsx workbook')


def test_a_size_that_is_not_an_integer_is_refused_by_build_and_counted_by_validate(tmp_path, capsys):
    path = _records_file(tmp_path, tmp_path / 'ds')
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0].update(width=50.0, height='40')
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows), encoding='utf-8')
    assert main(['data', 'build', '--records', str(path), '--out', str(tmp_path / 'fg'), '--num-proc', '1']) == 2
    err = capsys.readouterr().err
    assert err == f"fundusexpert: error: {path}:1: record 'a': width = 50.0: expected an integer number of pixels\n"
    rc, out, _ = _validate(capsys, '--records', path)
    assert rc == 1 and '  would skip 1 records: size_not_integer' in out
    assert f"  skipped: {path}:1: record 'a': width = 50.0: expected an integer number of pixels" in out.splitlines()
