"""Tests of engine/sources/base.py: images, masks, point boxes, the skip log."""
import numpy as np
import pytest
from PIL import Image

from fundusexpert_plugin.sources.base import (ConvertLog, FileIndex, MaskBoxParams, NotRepresentable,
                                                     RecordDraft, SourceInfo, attempt, read_mask)
from fundusexpert_plugin.core.record import FundusDataError

SRC = SourceInfo('test', 'CC0', '')


def test_red_rgb_mask_collapses_to_its_maximum_and_alpha_is_dropped(tmp_path, make_mask):
    path = make_mask(tmp_path / 'IDRiD_01_EX.tif', [(10, 20, 30, 25)], width=40, height=30, colour=(255, 0, 0))
    mask = read_mask(path, (30, 40), where='w', field_name='EX mask')
    assert mask.shape == (30, 40) and mask[20:25, 10:30].min() == 255 and mask.sum() == 255 * 100
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 3] = 255  # opaque everywhere: must not become foreground
    Image.fromarray(rgba).save(tmp_path / 'a.png')
    assert read_mask(tmp_path / 'a.png', (30, 40), where='w', field_name='m').max() == 0


def test_palette_and_colour_mode_masks_are_read_by_their_colours_not_their_codes(tmp_path):
    # REFUGE coding saved as a palette image: index 0 = white (background), 1 = grey 128 (rim), 2 = black (cup)
    idx = np.array([[0, 1, 2, 0]], np.uint8)
    pal = Image.fromarray(idx, 'P')
    pal.putpalette([255, 255, 255, 128, 128, 128, 0, 0, 0] + [0] * 759)
    pal.save(tmp_path / 'p.png')
    assert read_mask(tmp_path / 'p.png', (1, 4), where='w', field_name='m').tolist() == [[255, 128, 0, 255]]
    pal.save(tmp_path / 't.png', transparency=0)  # palette with a transparent index: colours, alpha dropped
    assert read_mask(tmp_path / 't.png', (1, 4), where='w', field_name='m').tolist() == [[255, 128, 0, 255]]
    # palette whose index 1 is red (IDRiD colour): the channel maximum, 255, as for an RGB mask
    red = Image.fromarray(np.array([[0, 1]], np.uint8), 'P')
    red.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    red.save(tmp_path / 'r.bmp')
    assert read_mask(tmp_path / 'r.bmp', (1, 2), where='w', field_name='m').tolist() == [[0, 255]]
    # CMYK is converted to RGB first: ink (0, 0, 0, 255) is black (0), no ink is white (255)
    Image.fromarray(np.array([[[0, 0, 0, 255], [0, 0, 0, 0]]], np.uint8), 'CMYK').save(tmp_path / 'c.tif')
    assert read_mask(tmp_path / 'c.tif', (1, 2), where='w', field_name='m').tolist() == [[0, 255]]


def test_mask_of_another_size_or_unreadable_is_an_error_naming_the_field(tmp_path, make_mask):
    path = make_mask(tmp_path / 'm.png', [], width=40, height=30)
    with pytest.raises(FundusDataError, match=r'img\.jpg: EX mask: mask .*m\.png is 40x30 px but the image is 50x30'):
        read_mask(path, (30, 50), where='img.jpg', field_name='EX mask')
    (tmp_path / 'bad.tif').write_bytes(b'not a tiff')
    with pytest.raises(FundusDataError, match=r'img\.jpg: HE mask: unreadable mask'):
        read_mask(tmp_path / 'bad.tif', (30, 50), where='img.jpg', field_name='HE mask')


def test_missing_or_unreadable_image_names_the_row(tmp_path):
    with pytest.raises(FundusDataError, match=r'labels\.csv:4: image: image not found: .*nope\.jpg'):
        RecordDraft('x', tmp_path / 'nope.jpg', where='labels.csv:4')
    (tmp_path / 'bad.jpg').write_bytes(b'xx')
    with pytest.raises(FundusDataError, match='unreadable image'):
        RecordDraft('x', tmp_path / 'bad.jpg', where='labels.csv:4')


def test_fovea_point_becomes_a_one_disc_diameter_box_clipped_to_the_image(tmp_path, make_image):
    image = make_image(tmp_path / 'a.jpg', 100, 80)
    # no disc in the record: DD = 0.13 x 100 px = 13 px, so a 13-px box centred on the point
    draft = RecordDraft('r', image, where='t.csv:2')
    draft.add_point('fovea', 50.5, 40, field_name='Fovea_X/Fovea_Y')
    draft.add_point('fovea', 0.5, 79.5, field_name='Fovea_X/Fovea_Y')                 # clipped at the corner
    assert draft.build(SRC).boxes('fovea') == [(44.0, 33.5, 57.0, 46.5), (0.0, 73.0, 7.0, 80.0)]
    with pytest.raises(FundusDataError, match=r't\.csv:2: Fovea_X/Fovea_Y = \(120, 40\): outside the 100x80'):
        draft.add_point('fovea', 120, 40, field_name='Fovea_X/Fovea_Y')
    # a disc box of 30 x 30 px, added after the point: DD 30 px
    draft = RecordDraft('r', image, where='t.csv:2')
    draft.add_point('fovea', 70, 40, field_name='fovea_xy')
    draft.add_box('optic_disc', (10, 20, 40, 50))
    assert draft.build(SRC).boxes('fovea') == [(55.0, 25.0, 85.0, 55.0)]
    # only a disc centre point (IDRiD): the fovea lies 2.5 DD temporal and 0.25 DD inferior of it, so
    # DD = distance / hypot(2.5, 0.25); here the distance is that of DD = 20 px
    draft = RecordDraft('r', image, where='t.csv:2')
    draft.disc_centre_px = (10.0, 40.0)
    draft.add_point('fovea', 60, 45, field_name='Fovea_X/Fovea_Y')
    assert draft.build(SRC).boxes('fovea') == [pytest.approx((50.0, 35.0, 70.0, 55.0))]


def test_box_within_one_pixel_outside_is_clipped_beyond_is_an_error(tmp_path, make_image):
    draft = RecordDraft('r', make_image(tmp_path / 'a.jpg', 100, 80), where='w')
    draft.add_box('ex', (-0.4, 10, 100.6, 20))
    assert draft.findings[0]['box_px'] == [0.0, 10.0, 100.0, 20.0]
    with pytest.raises(FundusDataError, match='outside the 100x80 px image by more than 1.0 px'):
        draft.add_box('ex', (-5, 10, 50, 20))


def test_filtered_mask_is_not_claimed_as_annotated_and_is_counted(tmp_path, make_image):
    draft, log = RecordDraft('r', make_image(tmp_path / 'a.jpg', 100, 80), where='w'), ConvertLog()
    fg = np.zeros((80, 100), bool)
    fg[10:13, 10:13] = True  # one 3x3 microaneurysm: area (12-10)*(12-10) = 4 <= 100 px^2
    assert draft.add_mask('microaneurysms', fg, MaskBoxParams(), log) == 0
    assert draft.annotated == [] and sum(log.notes.values()) == 1
    empty = np.zeros((80, 100), bool)
    draft.add_mask('haemorrhages', empty, MaskBoxParams(), log)
    assert draft.annotated == ['haemorrhages']  # empty mask: known absent
    fg[40:60, 50:70] = True  # within eps = 50 px of the 3x3 spot: one cluster x 10..69, y 10..59
    draft.add_mask('hard_exudates', fg, MaskBoxParams(), log)
    assert draft.findings[-1]['box_px'] == [10.0, 10.0, 70.0, 60.0] and 'hard_exudates' in draft.annotated


def test_clusters_beyond_max_boxes_are_counted_and_the_class_is_not_claimed_complete(tmp_path, make_image):
    draft, log = RecordDraft('r', make_image(tmp_path / 'a.jpg', 400, 100), where='w'), ConvertLog()
    fg = np.zeros((100, 400), bool)
    for k in range(4):  # four 12x12 spots 100 px apart (> eps 50): areas 11*11 = 121 > 100 px^2
        fg[40:52, 20 + 100 * k:32 + 100 * k] = True
    assert draft.add_mask('hard_exudates', fg, MaskBoxParams(max_boxes=3), log) == 3
    assert draft.annotated == []  # 3 of 4 regions: not the complete set, so not listed as annotated
    assert log.notes == {'hard_exudates: mask cluster beyond the largest 3 (--max-boxes); class not listed as '
                         'annotated for that image': 1}
    # the same mask under the default cap of 10: all four kept, the class is annotated
    assert draft.add_mask('haemorrhages', fg, MaskBoxParams(), log) == 4 and draft.annotated == ['haemorrhages']
    # one disc per eye: the smaller fragments are counted, the class stays annotated
    assert draft.add_mask('optic_disc', fg, MaskBoxParams(), log, largest_only=True) == 1
    assert 'optic_disc' in draft.annotated
    assert log.notes['optic_disc: smaller mask cluster left out (one per eye, the largest kept)'] == 3
    rec = draft.build(SRC)
    assert len(rec.boxes('hard_exudates')) == 3 and 'hard_exudates' not in rec.provenance.annotated_labels
    # the record keeps the source's count of the capped class only (the disc's fragments are one disc)
    assert rec.provenance.region_counts == {'hard_exudates': 4} and rec.region_count('hard_exudates') == 4


def test_exact_duplicate_box_of_one_class_is_dropped_and_counted(tmp_path, make_image):
    log = ConvertLog()
    draft = RecordDraft('r', make_image(tmp_path / 'a.jpg', 100, 80), where='w', log=log)
    draft.add_box('ex', (10, 10, 20, 20))
    draft.add_box('hard_exudates', (10, 10, 20, 20))   # same class by its id, same box: a duplicate
    draft.add_box('ex', (-0.5, 10, 20, 20))            # clipped to (0, 10, 20, 20): a new box
    draft.add_box('ex', (0, 10, 20, 20))               # the same box as the clipped one
    draft.add_box('haemorrhages', (10, 10, 20, 20))    # another class on the same box: kept
    draft.annotate('hard_exudates')
    rec = draft.build(SRC)
    assert [(f.label, f.box_px) for f in rec.findings] == [('hard_exudates', (10, 10, 20, 20)),
                                                          ('hard_exudates', (0, 10, 20, 20)),
                                                          ('haemorrhages', (10, 10, 20, 20))]
    assert log.notes == {'hard_exudates: exact duplicate box (same class, same xyxy)': 2}
    assert rec.provenance.annotated_labels == ['hard_exudates'] and not log.skipped


def test_laterality_from_disc_against_fovea_or_image_centre(tmp_path, make_image):
    draft = RecordDraft('r', make_image(tmp_path / 'a.jpg', 100, 80), where='w')
    draft.infer_laterality(disc_x=30, fovea_x=10)  # disc right of the fovea: right eye
    assert (draft.laterality, draft.laterality_source) == ('right', 'optic_disc_position')
    draft.infer_laterality(disc_x=30)  # left of the image centre: left eye
    assert draft.laterality == 'left'


def test_attempt_counts_not_representable_and_skips_bad_items_only_when_lenient():
    log = ConvertLog()

    def bad():
        raise FundusDataError('f.csv:3: column x')

    def nothing():
        raise NotRepresentable('grade 5')
    assert attempt(nothing, lenient=False, log=log) is None and log.notes == {'grade 5': 1}
    with pytest.raises(FundusDataError):
        attempt(bad, lenient=False, log=log)
    assert attempt(bad, lenient=True, log=log) is None and log.skipped == ['f.csv:3: column x']
    assert 'skipped: f.csv:3: column x' in log.summary(7) and log.summary(7).startswith('7 records written')


def test_record_with_nothing_to_say_is_not_representable(tmp_path, make_image):
    with pytest.raises(NotRepresentable):
        RecordDraft('r', make_image(tmp_path / 'a.jpg', 100, 80), where='w').build(SRC)


def test_file_index_finds_by_name_stem_and_letter_suffix_and_reports_ambiguity(tmp_path, make_image):
    make_image(tmp_path / 'x' / 'C0001_EX.png', 10, 10)
    make_image(tmp_path / 'x' / 'img_2.png', 10, 10)
    index = FileIndex(tmp_path / 'x', suffixed=True)
    assert index.find('C0001', where='w', field_name='f').name == 'C0001_EX.png'
    assert index.find('img', where='w', field_name='f', required=False) is None  # '_2' is not a letter suffix
    make_image(tmp_path / 'x' / 'sub' / 'C0001_MA.png', 10, 10)
    with pytest.raises(FundusDataError, match="'C0001': ambiguous"):
        FileIndex(tmp_path / 'x', suffixed=True).find('C0001', where='w', field_name='f')
    with pytest.raises(FileNotFoundError, match='folder not found'):
        FileIndex(tmp_path / 'nope')
