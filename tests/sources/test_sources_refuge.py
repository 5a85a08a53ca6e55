"""Tests of engine/sources/refuge.py: REFUGE archives and Drishti-GS1 soft maps."""
import pytest

from fundusexpert_plugin.sources.base import ConvertLog
from fundusexpert_plugin.sources.refuge import read_drishti, read_refuge
from fundusexpert_plugin.core.record import FundusDataError

# REFUGE mask: 255 background, 128 disc rim, 0 cup (the disc contains the cup).
DISC_CUP = [(200, 60, 260, 120, 128), (220, 80, 240, 100, 0)]


@pytest.fixture
def refuge_train(tmp_path, make_image, make_mask, make_xlsx):
    images = tmp_path / 'REFUGE-Training400' / 'Training400'
    masks = tmp_path / 'Annotation-Training400' / 'Disc_Cup_Masks'
    make_image(images / 'Glaucoma' / 'g0001.jpg', 300, 200)
    make_image(images / 'Non-Glaucoma' / 'n0001.jpg', 300, 200)
    make_mask(masks / 'Glaucoma' / 'g0001.bmp', DISC_CUP, 300, 200, background=255)
    make_mask(masks / 'Non-Glaucoma' / 'n0001.bmp', [(40, 60, 100, 120, 128), (60, 80, 80, 100, 0)], 300, 200,
              background=255)
    # Layout of REFUGE Annotation-Training400/Fovea_location.xlsx (Orlando et al., MedIA 2020; challenge archive)
    fovea = make_xlsx(tmp_path / 'Annotation-Training400' / 'Fovea_location.xlsx',
                      [['ID', 'ImgName', 'Fovea_X', 'Fovea_Y'], [1, 'g0001.jpg', 100.5, 95.25],
                       [2, 'n0001.jpg', 210, 101]])
    return images, masks, fovea


def test_refuge_training_disc_cup_fovea_and_folder_label(refuge_train):
    log = ConvertLog()
    g, n = read_refuge(*refuge_train[:2], tables=[refuge_train[2]], log=log)
    assert g.image_labels == {'diagnosis': 'glaucoma'} and n.image_labels == {}
    assert [(f.label, f.box_px) for f in g.findings] == [
        ('optic_disc', (200.0, 60.0, 260.0, 120.0)), ('optic_cup', (220.0, 80.0, 240.0, 100.0)),
        ('fovea', (70.5, 65.25, 130.5, 125.25))]     # 1 DD (the 60-px disc) centred on (100.5, 95.25)
    # disc centre x 230 right of the fovea x 100.5: right eye; n0001 disc x 70 left of fovea x 210: left eye
    assert (g.laterality, n.laterality) == ('right', 'left')
    assert set(g.provenance.annotated_labels) == {'optic_disc', 'optic_cup', 'fovea'}
    assert g.record_id == 'g0001' and 'Orlando' in g.provenance.attribution
    assert log.notes == {'REFUGE non-glaucoma label: no "not glaucoma" slot; label left out': 1}


def test_refuge_palette_mask_is_read_by_its_grey_colours_not_its_indices(refuge_train):
    import numpy as np
    from PIL import Image
    images, masks, fovea = refuge_train
    # the g0001 mask saved as a palette image: index 0 = white background, 1 = grey 128 rim, 2 = black cup
    grey = np.asarray(Image.open(masks / 'Glaucoma' / 'g0001.bmp'))
    index = np.select([grey == 255, grey == 128], [0, 1], 2).astype(np.uint8)
    pal = Image.fromarray(index, 'P')
    pal.putpalette([255, 255, 255, 128, 128, 128, 0, 0, 0] + [0] * 759)
    pal.save(masks / 'Glaucoma' / 'g0001.bmp')
    assert Image.open(masks / 'Glaucoma' / 'g0001.bmp').mode == 'P'
    g, _ = read_refuge(images, masks, tables=[fovea])
    # the same boxes as the grey ('L') mask, not the whole image (index 0 <= 150 would be all "disc")
    assert g.boxes('optic_disc') == [(200.0, 60.0, 260.0, 120.0)] and g.boxes('optic_cup') == [(220.0, 80.0, 240.0, 100.0)]
    assert g.laterality == 'right'


def test_refuge_test_layout_label_column_and_bad_label(tmp_path, make_image, make_mask, make_xlsx):
    make_image(tmp_path / 'REFUGE-Test400' / 'T0001.jpg', 300, 200)
    make_mask(tmp_path / 'REFUGE-Test-GT' / 'Disc_Cup_Masks' / 'G' / 'T0001.bmp', DISC_CUP, 300, 200, background=255)
    # Layout of REFUGE-Test-GT/Glaucoma_label_and_Fovea_location.xlsx (REFUGE challenge archive)
    table = make_xlsx(tmp_path / 'REFUGE-Test-GT' / 'Glaucoma_label_and_Fovea_location.xlsx',
                      [['ID', 'ImgName', 'Fovea_X', 'Fovea_Y', 'Label(Glaucoma=1)'], [1, 'T0001.jpg', 120, 90, 1]])
    (rec,) = read_refuge(tmp_path / 'REFUGE-Test400', tmp_path / 'REFUGE-Test-GT' / 'Disc_Cup_Masks', tables=[table])
    assert rec.image_labels == {'diagnosis': 'glaucoma'} and rec.boxes('fovea') == [(90.0, 60.0, 150.0, 120.0)]
    make_xlsx(table, [['ID', 'ImgName', 'Fovea_X', 'Fovea_Y', 'Label(Glaucoma=1)'], [1, 'T0001.jpg', 120, 90, 2]])
    with pytest.raises(FundusDataError, match=r"Fovea_location\.xlsx:2: column 'Label\(Glaucoma=1\)' = '2'"):
        list(read_refuge(tmp_path / 'REFUGE-Test400', tables=[table]))


def test_drishti_soft_maps_at_least_two_of_four_experts(tmp_path, make_image, make_mask, make_text):
    root = tmp_path / 'Drishti-GS1_files' / 'Training'
    make_image(root / 'Images' / 'drishtiGS_002.png', 300, 200)
    soft = root / 'GT' / 'drishtiGS_002' / 'SoftMap'
    # 1/4 experts (64) outer ring, 2/4 (127) middle, 4/4 (255) core
    make_mask(soft / 'drishtiGS_002_ODsegSoftmap.png', [(90, 40, 210, 160, 64), (100, 50, 200, 150, 127),
                                                         (120, 70, 180, 130, 255)], 300, 200)
    make_mask(soft / 'drishtiGS_002_cupsegSoftmap.png', [(130, 80, 170, 120, 191)], 300, 200)
    labels = make_text(tmp_path / 'diagnosis.csv', 'Image name,Glaucoma\ndrishtiGS_002,Glaucomatous\n')
    (rec,) = read_drishti(root / 'Images', root / 'GT', labels_table=labels)
    assert [(f.label, f.box_px) for f in rec.findings] == [('optic_disc', (100.0, 50.0, 200.0, 150.0)),
                                                          ('optic_cup', (130.0, 80.0, 170.0, 120.0))]
    assert rec.image_labels == {'diagnosis': 'glaucoma'}
    assert rec.laterality is None  # disc-centred photos: no laterality from the disc


def test_drishti_published_diagnosis_sheet(tmp_path, make_image, make_xlsx):
    # Layout of Drishti-GS1_files/Drishti-GS1_diagnosis.xlsx as public code reads it
    # (pd.read_excel(..., skiprows=3)[1:]; xlrd sheet.col_values(1)[5:] and col_values(8)[5:];
    # names with a quote stripped): title rows, the header on row 4 with 'Drishti-GS File' in column B and
    # 'Total' in column I, a sub-header on row 5, data from row 6, names written as 'drishtiGS_002'.
    root = tmp_path / 'Drishti-GS1_files' / 'Training'
    make_image(root / 'Images' / 'drishtiGS_002.png', 300, 200)
    make_image(root / 'Images' / 'drishtiGS_004.png', 300, 200)
    experts = ['Expert 1', 'Expert 2', 'Expert 3', 'Expert 4']
    sheet = make_xlsx(tmp_path / 'Drishti-GS1_files' / 'Drishti-GS1_diagnosis.xlsx', [
        ['Drishti-GS1: Retinal image dataset for optic nerve head segmentation'],
        ['Diagnosis by four glaucoma experts'],
        [],
        ['Sl. No', 'Drishti-GS File', *experts, 'Notching', 'Other', 'Total'],
        [None, None, 'Decision', 'Decision', 'Decision', 'Decision', None, None, None],
        [1, "'drishtiGS_002'", 'Glaucomatous', 'Glaucomatous', 'Normal', 'Glaucomatous', 'Yes', None, 'Glaucomatous'],
        [2, "'drishtiGS_004'", 'Normal', 'Normal', 'Normal', 'Normal', 'No', None, 'Normal']])
    log = ConvertLog()
    recs = {r.record_id: r for r in read_drishti(root / 'Images', labels_table=sheet, log=log)}
    assert recs['drishtiGS_002'].image_labels == {'diagnosis': 'glaucoma'}
    # Normal: no "not glaucoma" slot, counted; with no soft map given the photo has nothing else to say
    assert 'drishtiGS_004' not in recs
    assert log.notes['Drishti-GS non-glaucoma label: no "not glaucoma" slot; label left out'] == 1
    assert recs['drishtiGS_002'].provenance.source_dataset == 'Drishti-GS1'


def test_refuge_bad_fovea_cell_is_one_skipped_item_the_masks_are_kept(refuge_train, make_xlsx):
    images, masks, fovea = refuge_train
    make_xlsx(fovea, [['ID', 'ImgName', 'Fovea_X', 'Fovea_Y'], [1, 'g0001.jpg', 'abc', 95.25], [2, 'n0001.jpg', 210, 101]])
    with pytest.raises(FundusDataError, match=r"Fovea_location\.xlsx:2: column 'Fovea_X' = 'abc': expected a number"):
        list(read_refuge(images, masks, tables=[fovea]))
    log = ConvertLog()
    g, n = read_refuge(images, masks, tables=[fovea], lenient=True, log=log)
    assert g.image_labels == {'diagnosis': 'glaucoma'}
    assert [(f.label, f.box_px) for f in g.findings] == [('optic_disc', (200.0, 60.0, 260.0, 120.0)),
                                                         ('optic_cup', (220.0, 80.0, 240.0, 100.0))]
    assert set(g.provenance.annotated_labels) == {'optic_disc', 'optic_cup'}
    assert g.laterality == 'right'  # no fovea: disc centre x 230 against the image centre 150
    assert n.boxes('fovea') == [(180.0, 71.0, 240.0, 131.0)]  # 60-px disc: 60-px box at (210, 101)
    assert log.skipped_items == {'not_a_number': 1} and not log.skipped_records


def test_refuge_missized_mask_keeps_label_and_fovea(refuge_train, make_mask):
    images, masks, fovea = refuge_train
    make_mask(masks / 'Glaucoma' / 'g0001.bmp', DISC_CUP, 310, 200, background=255)
    log = ConvertLog()
    g, _ = read_refuge(images, masks, tables=[fovea], lenient=True, log=log)
    assert g.image_labels == {'diagnosis': 'glaucoma'} and [f.label for f in g.findings] == ['fovea']
    assert g.provenance.annotated_labels == ['fovea'] and log.skipped_items == {'mask_size_mismatch': 1}
    assert 'g0001.jpg: disc/cup mask: mask' in log.skipped[0] and 'is 310x200 px but the image is 300x200' in log.skipped[0]
