"""Records with nothing to say get no diagnosis / report rows (a non-answer is not training data)."""
import pytest

from fundusexpert_plugin.tasks.config import default_tasks_dir, load_task
from fundusexpert_plugin.tasks.render import RenderContext, render_rows

NOTHING = {'source_dataset': 'clinic', 'licence': 'private'}          # no annotated classes, no detector


def _rows(record, name, tmp_path, lang='en'):
    return render_rows(record, load_task(default_tasks_dir() / f'{name}.yaml'), lang, RenderContext(tmp_path, '.'))


@pytest.mark.parametrize('lang', ['en', 'zh'])
def test_a_record_with_no_finding_no_label_and_no_known_absence_gets_no_narrative_rows(make_record, tmp_path, lang):
    rec = make_record(provenance=NOTHING)        # e.g. a DICOM photograph converted without labels
    for name in ('diagnosis', 'report', 'grounded_report'):
        assert _rows(rec, name, tmp_path, lang) == [], name


def test_a_label_alone_gives_a_diagnosis_and_a_report_but_nothing_to_ground(make_record, tmp_path):
    rec = make_record(provenance=NOTHING, image_labels={'diagnosis': 'glaucoma'})
    (diag,) = _rows(rec, 'diagnosis', tmp_path)
    assert diag['messages'][-1]['content'] == 'Glaucoma.'
    (report,) = _rows(rec, 'report', tmp_path)
    assert report['messages'][-1]['content'].endswith('Conclusion: glaucoma.')
    assert _rows(rec, 'grounded_report', tmp_path) == []


def test_known_absent_lesions_are_a_conclusion(make_record, tmp_path):
    rec = make_record()                  # the source annotates EX/HE exhaustively and found none
    (diag,) = _rows(rec, 'diagnosis', tmp_path)
    assert diag['messages'][-1]['content'] == 'None of the annotated lesion types (hard exudates and haemorrhages) is present.'
    assert len(_rows(rec, 'report', tmp_path)) == 1 and _rows(rec, 'grounded_report', tmp_path) == []


@pytest.mark.parametrize('lang,colour,grey', [('en', 'colour fundus photograph', 'greyscale fundus photograph'),
                                              ('zh', '彩色眼底照片', '灰度眼底照片')])
def test_prompts_call_a_photograph_converted_from_grey_greyscale(make_record, tmp_path, lang, colour, grey):
    disc = [('optic_disc', (100, 300, 240, 440))]
    prov = {'source_dataset': 'test', 'licence': 'CC0', 'annotated_labels': ['optic_disc']}
    grey_rec = make_record(disc, provenance={**prov, 'stages': {'image': 'L->RGB'}}, laterality='left')
    colour_rec = make_record(disc, provenance=prov, laterality='left')
    prompts = {name: [(r['messages'][-2]['content'], c['messages'][-2]['content'])
                      for r, c in zip(_rows(grey_rec, name, tmp_path, lang), _rows(colour_rec, name, tmp_path, lang))]
               for name in ('laterality', 'region_detection', 'image_quality', 'diagnosis', 'grading')}
    pairs = [pair for rows in prompts.values() for pair in rows]
    assert pairs and all(colour not in g for g, _ in pairs), pairs
    named = [(g, c) for g, c in pairs if colour in c]
    assert named and all(g == c.replace(colour, grey) for g, c in named)
    assert all(g == c for g, c in pairs if colour not in c)       # other prompts are unchanged
