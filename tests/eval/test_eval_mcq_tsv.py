"""TSV (GMAI-MMBench schema) <-> swift rows, and FundusGen MCQ export."""
import base64
import csv
import io
import json
import logging

import numpy as np
import pytest
from PIL import Image

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.eval.mcq import build_prompt
from fundusexpert_plugin.eval.mcq_tsv import (export_fundusgen_mcq, read_tsv, tsv_matcher, tsv_to_swift_rows,
                                              write_tsv)


def _png_b64(colour):
    buf = io.BytesIO()
    Image.new('RGB', (8, 6), colour).save(buf, format='PNG')
    return base64.b64encode(buf.getvalue()).decode('ascii')


def _write(path, header, rows):
    with open(path, 'w', newline='', encoding='utf-8') as f:
        w = csv.writer(f, delimiter='\t', lineterminator='\n')
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture
def tsv(tmp_path):
    path = tmp_path / 'Fundus_MMBench.tsv'
    header = ['index', 'question', 'A', 'B', 'C', 'D', 'E', 'answer', 'category', 'department', 'image']
    _write(path, header, [
        ['0', 'What is the grade?', 'no DR', 'mild NPDR', 'PDR', '', '', 'B', 'mild NPDR', 'ophthalmology', _png_b64('red')],
        ['1', 'Is there glaucoma?', 'non glaucoma', 'glaucoma', '', '', '', 'A', 'non glaucoma', 'ophthalmology',
         '0'],   # VLMEvalKit: a short image value names the row holding the image
    ])
    return path


def test_tsv_reads_schema_and_keeps_other_columns(tsv):
    a, b = read_tsv(str(tsv))
    assert a.options == {'A': 'no DR', 'B': 'mild NPDR', 'C': 'PDR'} and a.answer == 'B'
    assert a.extra == {'department': 'ophthalmology'} and b.image_b64 == a.image_b64


def test_tsv_to_rows_decodes_images_and_writes_the_paper_prompt(tsv, tmp_path):
    rows_path, meta_path = tsv_to_swift_rows(str(tsv), str(tmp_path / 'out' / 'mmbench.jsonl'))
    rows = [json.loads(x) for x in open(rows_path)]
    meta = [json.loads(x) for x in open(meta_path)]
    assert rows[0]['messages'] == [
        {'role': 'user', 'content': "<image>Answer with the option's letter from the given choices directly.\n"
                                    'Question: What is the grade?\nA. no DR\nB. mild NPDR\nC. PDR\n'},
        {'role': 'assistant', 'content': 'B'}]
    assert rows[0]['images'][0].endswith('images/0.png') and Image.open(rows[1]['images'][0]).size == (8, 6)
    assert meta[1] == {'index': 1, 'task': 'mcq', 'answer': 'A', 'category': 'non glaucoma', 'tsv_index': '1',
                       'options': {'A': 'non glaucoma', 'B': 'glaucoma'}, 'department': 'ophthalmology'}


def _pixels(b64):
    with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
        return np.asarray(im.convert('RGB')).astype(int)


def test_tsv_round_trip(tsv, tmp_path):
    items = read_tsv(str(tsv))
    again = tmp_path / 'again.tsv'
    write_tsv(items, str(again), embed_images=True)
    back = read_tsv(str(again))
    for x, y in zip(items, back):
        assert (x.index, x.question, x.options, x.answer, x.category, x.extra) == \
               (y.index, y.question, y.options, y.answer, y.category, y.extra)
        # the embedded PNG is re-encoded from its pixels as a JPEG: solid red (255, 0, 0) comes back within
        # JPEG rounding
        assert base64.b64decode(y.image_b64)[:3] == b'\xff\xd8\xff'
        assert np.abs(_pixels(y.image_b64) - _pixels(x.image_b64)).max() <= 3


def _jpeg_with_metadata(path, size=(48, 32), orientation=None):
    """A JPEG whose pixels are a gradient, carrying EXIF DateTime + GPS, XMP and a JPEG comment."""
    w, h = size
    pixels = np.stack(np.meshgrid(np.arange(w) * 5 % 256, np.arange(h) * 7 % 256), -1)
    im = Image.fromarray(np.dstack([pixels, np.full((h, w), 90)]).astype(np.uint8))
    exif = im.getexif()
    exif[0x0132] = '2024:01:02 03:04:05'                           # DateTime
    exif.get_ifd(0x8825).update({1: 'N', 2: (52.0, 31.0, 12.0)})   # GPSLatitudeRef, GPSLatitude
    if orientation:
        exif[0x0112] = orientation
    im.save(path, exif=exif, comment=b'PATIENT DOE^JANE', xmp=b'<x:xmpmeta>DOE^JANE</x:xmpmeta>', quality=95)
    data = path.read_bytes()
    assert b'Exif' in data and b'xmpmeta' in data and b'DOE^JANE' in data   # the source really carries them
    return path


def _no_metadata(data: bytes):
    assert b'Exif' not in data and b'xmpmeta' not in data and b'DOE^JANE' not in data and b'2024:01:02' not in data
    with Image.open(io.BytesIO(data)) as im:
        assert not im.getexif() and not {'exif', 'xmp', 'comment', 'icc_profile'} & set(im.info), im.info.keys()


def test_embedded_images_are_fresh_metadata_free_jpegs_of_the_pixels(tmp_path, capsys, caplog):
    from fundusexpert_plugin.cli.main import main
    from fundusexpert_plugin.core.images import encode_jpeg, load_image

    caplog.set_level(logging.INFO)

    rows = _fundusgen_mcq_rows(tmp_path / 'heldout')
    source = _jpeg_with_metadata(tmp_path / 'heldout' / 'images' / '0003.jpg', size=(1072, 712))
    assert main(['eval', 'mcq-export', '--rows', str(rows), '--out', str(tmp_path / 'x.tsv'), '--embed-images']) == 0
    # said once (stdout), not logged again
    assert capsys.readouterr().out.count('exported 2 MCQ items') == 1 and 'exported 2 MCQ items' not in caplog.text
    en, zh = read_tsv(str(tmp_path / 'x.tsv'))
    header = (tmp_path / 'x.tsv').read_text().splitlines()[0].split('\t')
    assert 'image' in header and 'image_path' not in header         # no local file name travels with it
    assert str(tmp_path) not in (tmp_path / 'x.tsv').read_text() and en.image_path is None
    data = base64.b64decode(en.image_b64)
    _no_metadata(data)
    # the documented re-encoding: encode_jpeg(load_image(source).rgb, quality=95), byte for byte
    assert data == encode_jpeg(load_image(source).rgb, quality=95)
    with Image.open(source) as src:
        original = np.asarray(src.convert('RGB')).astype(int)
    assert _pixels(en.image_b64).shape == original.shape == (712, 1072, 3)
    assert np.abs(_pixels(en.image_b64) - original).mean() < 3       # JPEG q95 rounding only (2.0 here)
    assert zh.image_b64 == en.image_b64


def test_an_exif_rotated_photo_is_embedded_upright(tmp_path):
    from fundusexpert_plugin.eval.mcq_tsv import TsvItem, embedded_image

    source = _jpeg_with_metadata(tmp_path / 'rot.jpg', size=(48, 32), orientation=6)   # 90 degrees clockwise
    item = TsvItem(index='0', question='q', options={'A': 'x', 'B': 'y'}, answer='A', image_path=str(source))
    data = base64.b64decode(embedded_image(item))
    _no_metadata(data)
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (32, 48)


def test_decoded_tsv_images_are_fresh_lossless_pngs(tmp_path):
    from fundusexpert_plugin.eval.mcq_tsv import materialise_images

    source = _jpeg_with_metadata(tmp_path / 'src.jpg')
    b64 = base64.b64encode(source.read_bytes()).decode('ascii')
    path = tmp_path / 'm.tsv'
    _write(path, ['index', 'question', 'A', 'B', 'answer', 'image'], [['p 1', 'q', 'x', 'y', 'A', b64]])
    (item,) = materialise_images(read_tsv(str(path)), str(tmp_path / 'img'))
    assert item.image_path == str(tmp_path / 'img' / 'p_1.png')
    written = open(item.image_path, 'rb').read()
    _no_metadata(written)
    with Image.open(item.image_path) as png, Image.open(source) as src:
        assert png.format == 'PNG'
        assert np.array_equal(np.asarray(png), np.asarray(src.convert('RGB')))   # the decoded pixels, losslessly


def test_embedded_data_that_is_not_an_image_is_named_by_index(tmp_path):
    from fundusexpert_plugin.eval.mcq_tsv import TsvItem, embedded_image

    item = TsvItem(index='7', question='q', options={'A': 'x', 'B': 'y'}, answer='A',
                   image_b64=base64.b64encode(b'<html>not an image</html>' * 4).decode('ascii'))
    with pytest.raises(FundusDataError, match=r'^index 7: image: the base64 data is not a readable image \('):
        embedded_image(item)


def test_missing_column_is_reported(tmp_path):
    path = tmp_path / 'bad.tsv'
    _write(path, ['index', 'question', 'A', 'image'], [['0', 'q', 'x', 'abc']])
    with pytest.raises(ValueError, match=r"missing TSV column\(s\) \['B', 'answer'\]"):
        read_tsv(str(path))


def test_fundusgen_mcq_rows_export_to_a_tsv_vlmevalkit_can_read(tmp_path):
    image = tmp_path / 'f.png'
    Image.new('RGB', (4, 4)).save(image)
    rows = [
        {'messages': [{'role': 'user', 'content': '<image>' + build_prompt('Which lesion is marked?',
                                                                            {'A': 'drusen', 'B': 'hard exudates'})},
                      {'role': 'assistant', 'content': 'B'}], 'images': [{'path': str(image)}]},
        {'messages': [{'role': 'user', 'content': '<image>What DR grade?\nA. mild\nB. severe'},
                      {'role': 'assistant', 'content': '(A)'}], 'images': [str(image)], 'category': 'dr_grade'},
        {'messages': [{'role': 'user', 'content': '<image>Describe the image.'},
                      {'role': 'assistant', 'content': 'A normal fundus.'}], 'images': [str(image)]},
        {'messages': [{'role': 'user', 'content': '<image>Pick.\nA. x\nB. y'},
                      {'role': 'assistant', 'content': 'C'}], 'images': [str(image)]},   # letter not an option
    ]
    src = tmp_path / 'fundusgen.jsonl'
    src.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    assert export_fundusgen_mcq(str(src), str(tmp_path / 'fg.tsv')) == (2, 2)
    first, second = read_tsv(str(tmp_path / 'fg.tsv'))
    assert (first.question, first.options, first.answer, first.category) == (
        'Which lesion is marked?', {'A': 'drusen', 'B': 'hard exudates'}, 'B', 'fundusgen')
    assert (second.question, second.answer, second.category, second.image_path) == (
        'What DR grade?', 'A', 'dr_grade', str(image))


def test_matcher_uses_the_image_when_prompts_repeat(tsv, tmp_path):
    items = read_tsv(str(tsv))
    items.append(items[0].__class__(**{**items[0].__dict__, 'index': '7'}))   # same question, other image
    match = tsv_matcher(items)
    prompt = '<image>' + build_prompt(items[0].question, items[0].options)
    assert match(prompt, '/data/images/7.png').index == '7'
    assert match(prompt, None) is None and match('unknown', None) is None


def test_general_vmcq_file_for_swift_eval(tsv, tmp_path):
    from fundusexpert_plugin.eval.mcq_tsv import materialise_images, write_general_vmcq

    items = materialise_images(read_tsv(str(tsv)), str(tmp_path / 'img'))
    path = write_general_vmcq(items, str(tmp_path / 'vmcq'), 'fundus')
    first = json.loads(open(path).readline())
    assert path.endswith('fundus_val.jsonl')
    assert first == {'question': '<image 1>What is the grade?', 'options': ['no DR', 'mild NPDR', 'PDR'],
                     'image_1': items[0].image_path, 'answer': 'B'}


def _fundusgen_mcq_rows(folder):
    """Two region MCQ rows as templates/mcq.yaml writes them (EN, ZH), image relative to the rows file."""
    (folder / 'images').mkdir(parents=True)
    Image.new('RGB', (1072, 712)).save(folder / 'images' / '0003.jpg')
    objects = {'ref': [], 'bbox': [[166.25, 239.5, 316.0, 407.0]], 'bbox_type': 'real'}
    en = ("<image>Answer with the option's letter from the given choices directly.\nQuestion: Which of the following "
          'is located at <bbox> in this fundus image?\nA. drusen\nB. optic disc\nC. haemorrhages')
    zh = '<image>请直接回答选项字母。\n问题：这张眼底图像中位于<bbox>的是以下哪一项？\nA. 玻璃膜疣\nB. 视盘\nC. 出血'
    rows = [{'messages': [{'role': 'user', 'content': text}, {'role': 'assistant', 'content': 'B'}],
             'images': ['images/0003.jpg'], 'objects': objects, 'task': 'mcq', 'width': 1072, 'height': 712}
            for text in (en, zh)]
    path = folder / 'mcq.jsonl'
    path.write_text(''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in rows), encoding='utf-8')
    return path


def test_fundusgen_export_renders_the_box_and_resolves_images_against_the_rows_file(tmp_path, monkeypatch):
    rows = _fundusgen_mcq_rows(tmp_path / 'fg' / 'heldout')
    monkeypatch.chdir(tmp_path)                       # not the rows' folder
    assert export_fundusgen_mcq(str(rows.relative_to(tmp_path)), 'FundusGen_MCQ.tsv', embed_images=True) == (2, 0)
    en, zh = read_tsv(str(tmp_path / 'FundusGen_MCQ.tsv'))
    # (166.25, 239.5, 316, 407) px of 1072 x 712 -> int(v / W * 1000): 155, 336, 294, 571
    assert en.question == 'Which of the following is located at [155, 336, 294, 571] in this fundus image?'
    assert zh.question == '这张眼底图像中位于[155, 336, 294, 571]的是以下哪一项？'   # instruction prefix stripped
    assert en.extra['bbox_convention'] == 'xyxy integers on the 0-999 grid of the whole image'
    assert en.image_path is None and en.image_b64                  # embedded: the image, not its local path
    assert (zh.options, zh.answer) == ({'A': '玻璃膜疣', 'B': '视盘', 'C': '出血'}, 'B')
    assert export_fundusgen_mcq(str(rows.relative_to(tmp_path)), 'paths.tsv') == (2, 0)
    en, _ = read_tsv(str(tmp_path / 'paths.tsv'))
    assert en.image_path == str((tmp_path / 'fg' / 'heldout' / 'images' / '0003.jpg').resolve()) and not en.image_b64


def test_fundusgen_export_in_pixels(tmp_path):
    rows = _fundusgen_mcq_rows(tmp_path)
    export_fundusgen_mcq(str(rows), str(tmp_path / 'px.tsv'), box_convention='px')
    en, _ = read_tsv(str(tmp_path / 'px.tsv'))
    # round(166.25) = 166, round(239.5) = 240 (half to even), 316, 407
    assert en.question == 'Which of the following is located at [166, 240, 316, 407] in this fundus image?'


def test_fundusgen_export_refuses_a_missing_image_by_name(tmp_path):
    rows = _fundusgen_mcq_rows(tmp_path)
    (tmp_path / 'images' / '0003.jpg').unlink()
    with pytest.raises(FundusDataError, match=r"mcq\.jsonl:1: images\[0\] = 'images/0003\.jpg': image file not found"):
        export_fundusgen_mcq(str(rows), str(tmp_path / 'x.tsv'))


def test_fundusgen_round_trip_asks_each_item_in_its_own_language(tmp_path):
    rows = _fundusgen_mcq_rows(tmp_path / 'fg')
    export_fundusgen_mcq(str(rows), str(tmp_path / 'FundusGen_MCQ.tsv'))
    items = read_tsv(str(tmp_path / 'FundusGen_MCQ.tsv'))
    assert [item.lang for item in items] == ['en', 'zh']
    out_rows, _ = tsv_to_swift_rows(str(tmp_path / 'FundusGen_MCQ.tsv'), str(tmp_path / 'rows.jsonl'))
    en, zh = [json.loads(line)['messages'][0]['content'] for line in open(out_rows, encoding='utf-8')]
    assert zh == '<image>请直接回答选项字母。\n问题：这张眼底图像中位于[155, 336, 294, 571]的是以下哪一项？\nA. 玻璃膜疣\nB. 视盘\nC. 出血\n'
    assert en.startswith("<image>Answer with the option's letter from the given choices directly.\nQuestion: Which")
    match = tsv_matcher(items)
    assert match(zh, None) is items[1] and match(en, None) is items[0]
