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
