"""The box CSV reader (image,label,x1,y1,x2,y2) and format detection of the registry."""
import pytest
from PIL import Image

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.sources.base import ConvertLog
from fundusexpert_plugin.sources.box_csv import read_box_csv
from fundusexpert_plugin.sources.registry import detect_format, formats


@pytest.fixture
def box_csv(tmp_path):
    for name in ('a.jpg', 'b.tif', 'a.webp'):
        (tmp_path / 'img').mkdir(exist_ok=True)
        Image.new('RGB', (200, 100)).save(tmp_path / 'img' / name)
    path = tmp_path / 'boxes.csv'
    path.write_text('image,label,x1,y1,x2,y2\n'
                    'img/a.jpg,optic_disc,10,20,50,60\n'
                    'img/a.jpg,EX,100,10,120,30\n'
                    'img/b.tif,haemorrhage,1,2,x,4\n'          # line 4: not a number
                    'img/b.tif,haemorrhage,5,6,7,8\n'
                    'img/a.webp,,,,,\n')                      # an image without boxes
    return path


def test_rows_of_one_image_form_one_record_ids_keep_the_extension(box_csv):
    log = ConvertLog()
    recs = list(read_box_csv(box_csv, lenient=True, annotated='classes', log=log))
    assert [r.record_id for r in recs] == ['img/a.jpg', 'img/b.tif', 'img/a.webp']
    assert [(f.label, f.box_px) for f in recs[0].findings] == [('optic_disc', (10, 20, 50, 60)),
                                                                 ('hard_exudates', (100, 10, 120, 30))]
    assert [f.box_px for f in recs[1].findings] == [(5, 6, 7, 8)] and recs[2].findings == []
    assert log.skipped_items == {'box_not_numbers': 1}
    assert recs[2].absent_labels() == ['optic_disc', 'hard_exudates', 'haemorrhages']


def test_strict_names_the_line_and_column(box_csv):
    with pytest.raises(FundusDataError, match=r"boxes\.csv:4: column 'x2' = 'x': expected a number"):
        list(read_box_csv(box_csv))


def test_one_record_id_for_two_images_names_both_lines(tmp_path):
    for name in ('a.jpg', 'b.jpg', 'c.jpg'):
        Image.new('RGB', (200, 100)).save(tmp_path / name)
    path = tmp_path / 'ids.csv'
    path.write_text('image,label,x1,y1,x2,y2,record_id\n'
                    'a.jpg,optic_disc,10,20,50,60,P1\n'
                    'b.jpg,optic_disc,10,20,50,60,P1\n'        # line 3: P1 again, another image
                    'c.jpg,optic_disc,10,20,50,60,P2\n')
    with pytest.raises(FundusDataError, match=r"ids\.csv:3: record_id 'P1' already given at .*ids\.csv:2"):
        list(read_box_csv(path))
    log = ConvertLog()
    assert [r.record_id for r in read_box_csv(path, lenient=True, log=log)] == ['P1', 'P2']
    assert log.skipped_records == {'duplicate_id': 1}


def test_a_box_given_twice_for_one_image_is_one_box_counted_in_the_log(tmp_path):
    Image.new('RGB', (200, 100)).save(tmp_path / 'a.jpg')
    path = tmp_path / 'boxes.csv'
    path.write_text('image,label,x1,y1,x2,y2\n'
                    'a.jpg,EX,100,10,120,30\n'
                    'a.jpg,hard_exudates,100,10,120,30\n'    # the same box under the class id: a duplicate
                    'a.jpg,EX,100,10,120,31\n')
    log = ConvertLog()
    (rec,) = read_box_csv(path, annotated='classes', log=log)
    assert rec.boxes('hard_exudates') == [(100, 10, 120, 31), (100, 10, 120, 30)]
    assert log.notes == {'hard_exudates: exact duplicate box (same class, same xyxy)': 1}


def test_registry_detects_each_format(box_csv, codras_dir):
    assert {'box-csv', 'codras', 'coco', 'masks', 'records', 'yolo'} <= set(formats())
    assert detect_format(box_csv) == 'box-csv'
    assert detect_format(codras_dir / 'annotations.jsonl') == 'codras'
    with pytest.raises(FundusDataError, match=r'not a recognised annotation layout; pass --format'):
        detect_format(box_csv.parent / 'img')
