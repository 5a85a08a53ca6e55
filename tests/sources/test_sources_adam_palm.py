"""Tests of engine/sources/adam_palm.py: ADAM and PALM (iChallenge layouts, 0 = object masks)."""
import pytest

from fundusexpert_plugin.sources.adam_palm import read_ichallenge
from fundusexpert_plugin.sources.base import ConvertLog
from fundusexpert_plugin.core.record import FundusDataError


@pytest.fixture
def adam(tmp_path, make_image, make_mask, make_xlsx):
    train = tmp_path / 'Training400'
    make_image(train / 'AMD' / 'A0001.jpg', 300, 200)
    make_image(train / 'Non-AMD' / 'N0001.jpg', 300, 200)
    # Layout of ADAM's Training400/Fovea_location.xlsx (iChallenge-AMD data page; Fang H. et al., IEEE TMI 2022)
    table = make_xlsx(train / 'Fovea_location.xlsx', [['ID', 'imgName', 'Fovea_X', 'Fovea_Y'],
                                                      [1, 'A0001.jpg', 200, 110], [2, 'N0001.jpg', 0, 0]])
    make_mask(tmp_path / 'Disc_Masks' / 'A0001.bmp', [(30, 50, 80, 100, 0)], 300, 200, background=255)
    make_mask(tmp_path / 'Lesion_Masks' / 'drusen' / 'A0001.bmp', [(180, 90, 200, 105, 0)], 300, 200, background=255)
    make_mask(tmp_path / 'Lesion_Masks' / 'exudate' / 'A0001.bmp', [(240, 20, 260, 40, 0)], 300, 200, background=255)
    return train, table, tmp_path / 'Disc_Masks', tmp_path / 'Lesion_Masks'


def test_adam_label_by_prefix_disc_drusen_fovea(adam):
    train, table, discs, lesions = adam
    log = ConvertLog()
    # N0001: non-AMD, no disc mask, fovea (0, 0): nothing representable, so no record
    (a,) = read_ichallenge('adam', train, tables=[table], disc_masks=discs, lesion_masks=lesions, log=log)
    assert a.image_labels == {'diagnosis': 'age_related_macular_degeneration'}
    assert [(f.label, f.box_px) for f in a.findings] == [
        ('optic_disc', (30.0, 50.0, 80.0, 100.0)), ('drusen', (180.0, 90.0, 200.0, 105.0)),
        ('fovea', (175.0, 85.0, 225.0, 135.0))]      # 1 DD (the 50 x 50 px disc) centred on (200, 110)
    assert a.laterality == 'left'  # disc centre x 55 left of the fovea x 200
    assert set(a.provenance.annotated_labels) == {'optic_disc', 'drusen', 'fovea'}  # no haemorrhage mask: unknown
    assert a.absent_labels() == []
    reasons = ' | '.join(log.notes)
    assert "lesion 'exudate': no vocabulary id" in reasons and 'non-age_related_macular_degeneration' in reasons
    assert 'fovea (0, 0) = not visible' in reasons and 'no disc mask' in reasons
    assert 'image with no representable label or finding: record skipped' in reasons


def test_adam_class_map_opts_exudate_in(adam):
    train, table, discs, lesions = adam
    a = next(read_ichallenge('adam', train, tables=[table], lesion_masks=lesions,
                             class_map={'exudate': 'hard_exudates'}))
    assert a.boxes('hard_exudates') == [(240.0, 20.0, 260.0, 40.0)]


def test_inverted_mask_polarity_is_reported(adam):
    train, table, discs, lesions = adam
    with pytest.raises(FundusDataError, match=r"A0001\.jpg: disc mask .*: 9[0-9]% of the pixels are foreground "
                                              r"\(foreground='nonzero'\); polarity inverted"):
        list(read_ichallenge('adam', train, disc_masks=discs, foreground='nonzero'))


def test_palm_label_column_and_prefixes(tmp_path, make_image, make_text):
    make_image(tmp_path / 'PALM-Training400' / 'P0001.jpg', 100, 80)
    make_image(tmp_path / 'PALM-Training400' / 'H0001.jpg', 100, 80)
    make_image(tmp_path / 'PALM-Validation400' / 'V0001.jpg', 100, 80)
    make_image(tmp_path / 'PALM-Validation400' / 'V0002.jpg', 100, 80)
    # Layout of PALM's PM_Label_and_Fovea_Location.csv (iChallenge-PM data page; Fang H. et al., Sci Data 2024)
    table = make_text(tmp_path / 'PM_Label_and_Fovea_Location.csv',
                      'imgName,Label,Fovea_X,Fovea_Y\nV0001.jpg,1,40,30\nV0002.jpg,0,60,30\n')
    log = ConvertLog()
    assert [r.record_id for r in read_ichallenge('palm', tmp_path / 'PALM-Training400', log=log)] == ['P0001']
    v1, v2 = read_ichallenge('palm', tmp_path / 'PALM-Validation400', tables=[table], log=log)
    assert v1.image_labels == {'diagnosis': 'pathological_myopia'} and v1.boxes('fovea') == [(33.5, 23.5, 46.5, 36.5)]
    assert v2.image_labels == {} and v2.record_id == 'V0002'  # non-PM: fovea box only
    # no disc in these records: DD = 0.13 x the 100-px width = 13 px around (40, 30)
    assert sum(n for r, n in log.notes.items() if 'negative label' in r) == 2  # H0001 and V0002


def test_adam_bad_lesion_mask_and_fovea_outside_are_skipped_items(adam, make_mask, make_xlsx):
    train, table, discs, lesions = adam
    make_mask(lesions / 'drusen' / 'A0001.bmp', [(180, 90, 200, 105, 0)], 150, 100, background=255)  # half size
    make_xlsx(table, [['ID', 'imgName', 'Fovea_X', 'Fovea_Y'], [1, 'A0001.jpg', 200, 250], [2, 'N0001.jpg', 0, 0]])
    kwargs = dict(tables=[table], disc_masks=discs, lesion_masks=lesions)
    with pytest.raises(FundusDataError, match=r'A0001\.jpg: drusen mask: mask .*drusen.A0001\.bmp is 150x100 px'):
        list(read_ichallenge('adam', train, **kwargs))
    log = ConvertLog()
    (a,) = read_ichallenge('adam', train, lenient=True, log=log, **kwargs)
    assert a.image_labels == {'diagnosis': 'age_related_macular_degeneration'}
    assert [(f.label, f.box_px) for f in a.findings] == [('optic_disc', (30.0, 50.0, 80.0, 100.0))]
    assert a.provenance.annotated_labels == ['optic_disc']  # drusen unreadable, fovea outside: neither claimed
    assert log.skipped_items == {'mask_size_mismatch': 1, 'point_outside_image': 1} and not log.skipped_records
    assert any('Fovea_location.xlsx:2: Fovea_X/Fovea_Y = (200.0, 250.0): outside the 300x200 px image' in m
               for m in log.skipped)
    # N0001's (0, 0) is noted once; A0001's skipped fovea is not also reported as "not visible"
    assert log.notes['ADAM (iChallenge-AMD): fovea (0, 0) = not visible; no fovea box'] == 1


def test_a_table_row_naming_no_photograph_stops_or_is_a_counted_skip(tmp_path, make_image, make_text):
    make_image(tmp_path / 'PALM-Validation400' / 'V0001.jpg', 100, 80)
    make_image(tmp_path / 'PALM-Validation400' / 'V0002.jpg', 100, 80)
    table = make_text(tmp_path / 'PM_Label_and_Fovea_Location.csv',
                      'imgName,Label,Fovea_X,Fovea_Y\nv0001.jpg,1,40,30\nV0002.jpg,0,60,30\n')
    with pytest.raises(FundusDataError) as err:
        list(read_ichallenge('palm', tmp_path / 'PALM-Validation400', tables=[table]))
    assert str(err.value) == (f"{table}:2: imgName = 'v0001.jpg': no photograph of that name under "
                              f"{tmp_path / 'PALM-Validation400'} (a photograph differs only in case: 'V0001')")
    assert err.value.reason == 'image_missing'
    log = ConvertLog()
    records = list(read_ichallenge('palm', tmp_path / 'PALM-Validation400', tables=[table], lenient=True, log=log))
    # the row is counted; V0001 itself has no label of its own (V: no prefix rule) and is left out as before
    assert [r.record_id for r in records] == ['V0002'] and log.counts()['records'] == {'image_missing': 1}
