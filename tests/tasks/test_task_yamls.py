"""Every shipped task YAML loads, renders rows, and bad YAML fails naming the file and field."""
import pytest
import yaml

from fundusexpert_plugin.core.record import FundusDataError
from fundusexpert_plugin.tasks.config import default_tasks_dir, load_task, load_tasks
from fundusexpert_plugin.tasks.render import RenderContext, render_rows

PAPER_KINDS = {'diagnosis', 'grading', 'region_detection', 'region_identification', 'report', 'grounded_report', 'mcq'}


def test_shipped_tasks_cover_the_six_paper_kinds_plus_mcq_and_three_more():
    tasks = load_tasks()
    assert PAPER_KINDS <= {t.kind for t in tasks}
    assert {'laterality', 'image_quality', 'vertical_cdr'} <= {t.name for t in tasks}
    for t in tasks:
        assert t.version >= 1 and t.description and set(t.prompts) == {'en', 'zh'}


@pytest.mark.parametrize('task', load_tasks(), ids=lambda t: t.name)
@pytest.mark.parametrize('lang', ['en', 'zh'])
def test_every_task_renders_standard_rows(task, lang, sample_train, tmp_path):
    from fundusexpert_plugin.sample import SAMPLE_DIR
    rec = sample_train['0003']
    rows = render_rows(rec, task, lang, RenderContext(tmp_path, SAMPLE_DIR))
    if task.kind == 'grading' or task.name in ('image_quality', 'vertical_cdr'):
        assert rows == []  # the sample has no grade, quality label or optic cup: nothing is invented
        return
    assert rows
    for row in rows:
        user, assistant = row['messages']
        assert user['role'] == 'user' and user['content'].startswith('<image>')
        assert assistant['role'] == 'assistant' and assistant['content']
        text = user['content'] + assistant['content']
        objects = row.get('objects') or {'ref': [], 'bbox': []}
        assert text.count('<ref-object>') == len(objects['ref'])
        assert text.count('<bbox>') == len(objects['bbox'])
        assert row['task'] == task.name and row['lang'] == lang and row['task_version'] == task.version


def _write(tmp_path, data):
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _base():
    return yaml.safe_load((default_tasks_dir() / 'region_detection.yaml').read_text())


def test_missing_field_is_named(tmp_path):
    data = _base()
    del data['answer']
    with pytest.raises(FundusDataError, match=r'bad\.yaml: answer: Field required'):
        load_task(_write(tmp_path, data))


def test_missing_language_is_named(tmp_path):
    data = _base()
    del data['prompts']['zh']
    with pytest.raises(FundusDataError, match=r"bad\.yaml: prompts: missing language\(s\) \['zh'\]"):
        load_task(_write(tmp_path, data))


def test_unfillable_placeholder_is_named(tmp_path):
    data = _base()
    data['prompts']['en'].append('Where is the {lesion}?')
    with pytest.raises(FundusDataError, match=r"bad\.yaml: prompts\.en\[2\]: placeholder \{lesion\} is not filled"):
        load_task(_write(tmp_path, data))


def test_unknown_field_and_target_are_rejected(tmp_path):
    data = _base()
    data['promts'] = data['prompts']
    with pytest.raises(FundusDataError, match=r'bad\.yaml: promts: Extra inputs are not permitted'):
        load_task(_write(tmp_path, data))
    data = _base()
    data['targets'] = ['optic_disk', 'exudatez']
    with pytest.raises(FundusDataError, match=r"targets: .*unknown finding label 'exudatez'"):
        load_task(_write(tmp_path, data))


def test_duplicate_task_names_are_rejected(tmp_path):
    for name in ('a.yaml', 'b.yaml'):
        (tmp_path / name).write_text((default_tasks_dir() / 'report.yaml').read_text())
    with pytest.raises(FundusDataError, match="task name 'report' already defined"):
        load_tasks(tmp_path)


def test_field_task_must_declare_the_fields_it_uses(tmp_path):
    data = yaml.safe_load((default_tasks_dir() / 'laterality.yaml').read_text())
    data['answer']['en'] = '{laterality}, {dr_grade}.'
    with pytest.raises(FundusDataError, match=r'answer\.en\[0\]: placeholder \{dr_grade\} is not filled.*requires'):
        load_task(_write(tmp_path, data))
    data['requires'] = ['laterality', 'cup_size']
    with pytest.raises(FundusDataError, match=r"requires: .*unknown record field\(s\) \['cup_size'\]"):
        load_task(_write(tmp_path, data))


def test_new_field_tasks_render_from_record_values(make_record, tmp_path):
    from PIL import Image
    Image.new('RGB', (1000, 800)).save(tmp_path / 'img.jpg')
    tasks = {t.name: t for t in load_tasks()}
    # disc 100 px high, cup 42 px high -> vertical CDR 0.42 -> '0.4'
    rec = make_record([('optic_disc', (100, 100, 200, 200)), ('optic_cup', (130, 129, 170, 171))],
                      laterality='right', image_labels={'image_quality': '2'})
    ctx = RenderContext(tmp_path, tmp_path)
    assert render_rows(rec, tasks['vertical_cdr'], 'en', ctx)[0]['messages'][1]['content'] == \
        'The vertical cup-to-disc ratio is about 0.4.'
    assert render_rows(rec, tasks['laterality'], 'zh', ctx)[0]['messages'][1]['content'] == '右眼。'
    assert render_rows(rec, tasks['image_quality'], 'en', ctx)[0]['messages'][1]['content'] == \
        'Reject: ungradable.'
    assert render_rows(make_record(), tasks['laterality'], 'en', ctx) == []   # unknown laterality: no row
