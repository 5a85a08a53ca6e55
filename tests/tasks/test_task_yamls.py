"""Every shipped task YAML loads, renders rows, and bad YAML fails naming the file and field."""
import pytest
import yaml

from fundusexpert_plugin.record import FundusDataError
from fundusexpert_plugin.tasks.config import default_tasks_dir, load_task, load_tasks
from fundusexpert_plugin.tasks.render import RenderContext, render_rows

PAPER_KINDS = {'diagnosis', 'grading', 'region_detection', 'region_identification', 'report', 'grounded_report', 'mcq'}


def test_shipped_tasks_cover_the_six_paper_kinds_plus_mcq():
    tasks = load_tasks()
    assert PAPER_KINDS <= {t.kind for t in tasks}
    for t in tasks:
        assert t.version >= 1 and t.description and set(t.prompts) == {'en', 'zh'}


@pytest.mark.parametrize('task', load_tasks(), ids=lambda t: t.name)
@pytest.mark.parametrize('lang', ['en', 'zh'])
def test_every_task_renders_standard_rows(task, lang, sample_train, tmp_path):
    from fundusexpert_plugin.sample import SAMPLE_DIR
    rec = sample_train['0003']
    rows = render_rows(rec, task, lang, RenderContext(tmp_path, SAMPLE_DIR))
    if task.kind == 'grading':
        assert rows == []  # the sample has no grade label: none is invented
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
