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


ZH_ONLY_REPORT = ('name: zh_report\nkind: report\nversion: 1\nprompts:\n  zh: ["请描述这张眼底照片。"]\n'
                  'answer:\n  zh: "{chain}"\n')


def test_task_file_not_in_utf8_names_file_line_and_byte_offset(tmp_path, capsys):
    from fundusexpert_plugin.cli.main import main
    (tmp_path / 'tasks').mkdir()
    path = tmp_path / 'tasks' / 'zh_report.yaml'
    path.write_bytes(ZH_ONLY_REPORT.encode('gbk'))   # a Chinese editor's default
    # '请' starts at byte 16 + 13 + 11 + 9 + 8 = 57 (lines 1-4 and '  zh: ["' of line 5); GBK c7 eb is
    # a UTF-8 lead byte followed by a non-continuation byte, so decoding stops at 57
    message = f'{path}:5: byte offset 57 is not UTF-8; save the task file as UTF-8'
    with pytest.raises(FundusDataError) as exc:
        load_task(path)
    assert str(exc.value) == message
    assert main(['data', 'build', '--sample', '--tasks-dir', str(tmp_path / 'tasks'),
                 '--out', str(tmp_path / 'o')]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f'fundusexpert: error: {message}']


def test_stray_brace_names_the_field_and_the_text(tmp_path):
    data = _base()
    data['prompts']['en'][0] = 'Locate the {target} {'
    with pytest.raises(FundusDataError, match=r"bad\.yaml: prompts\.en\[0\] = 'Locate the \{target\} \{': "
                                              r"Single '\{' encountered in format string"):
        load_task(_write(tmp_path, data))
    data = _base()
    data['answer']['zh'] = '{grounded_target}}'
    with pytest.raises(FundusDataError, match=r"bad\.yaml: answer\.zh\[0\] = '\{grounded_target\}\}': "
                                              r"Single '\}' encountered"):
        load_task(_write(tmp_path, data))


@pytest.mark.parametrize('text, shown', [('{grounded_target!r}', '{grounded_target!r}'),
                                         ('{grounded_target:>40}', '{grounded_target:>40}'),
                                         ('{target:d}', '{target:d}')])
def test_format_specs_and_conversions_are_refused(tmp_path, text, shown):
    # "{x!r}" would write quotes into every answer, "{x:>40}" padding, "{x:d}" fail mid-build
    data = _base()
    data['answer']['en'] = text
    with pytest.raises(FundusDataError) as exc:
        load_task(_write(tmp_path, data))
    assert str(exc.value) == (f'{tmp_path / "bad.yaml"}: answer.en[0]: {shown}: format specs and conversions are not '
                              f'allowed (the value is display text); write {{{shown[1:].split("!")[0].split(":")[0]}}}')


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    path = tmp_path / 'bad.yaml'
    text = (default_tasks_dir() / 'region_detection.yaml').read_text(encoding='utf-8')
    path.write_text(text + 'answer:\n  en: "{grounded_target}"\n  zh: "{grounded_target}"\n', encoding='utf-8')
    first = 1 + text.splitlines().index('answer:')
    last = len(text.splitlines()) + 1
    with pytest.raises(FundusDataError) as exc:
        load_task(path)
    assert str(exc.value) == f"{path}: not valid YAML: line {last}: key 'answer' given twice (first on line {first})"
    path.write_text(text.replace('  en:\n    - "Locate', '  en: ["x {target}"]\n  en:\n    - "Locate', 1),
                    encoding='utf-8')
    with pytest.raises(FundusDataError, match="key 'en' given twice"):
        load_task(path)


def test_yml_task_files_load_and_a_name_in_both_endings_is_refused(tmp_path, sample_train):
    from fundusexpert_plugin.tasks.config import task_files
    (tmp_path / 'report.yml').write_text((default_tasks_dir() / 'report.yaml').read_text(encoding='utf-8'),
                                         encoding='utf-8')
    (tmp_path / 'mcq.yaml').write_text((default_tasks_dir() / 'mcq.yaml').read_text(encoding='utf-8'),
                                       encoding='utf-8')
    (tmp_path / 'notes.txt').write_text('not a task')
    assert [t.name for t in load_tasks(tmp_path)] == ['mcq', 'report']
    assert [p.name for p in task_files(tmp_path)] == ['mcq.yaml', 'report.yml']
    (tmp_path / 'report.yaml').write_text((default_tasks_dir() / 'report.yaml').read_text(encoding='utf-8'),
                                          encoding='utf-8')
    with pytest.raises(FundusDataError, match=rf"{tmp_path / 'report.yaml'} and {tmp_path / 'report.yml'}: "
                                              r"the same task file twice"):
        load_tasks(tmp_path)
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r'no task \*\.yaml or \*\.yml files in'):
        load_tasks(empty)


def test_a_yml_task_builds_through_the_cli(tmp_path):
    import json
    from fundusexpert_plugin.cli.main import main
    (tmp_path / 'tasks').mkdir()
    (tmp_path / 'tasks' / 'laterality.yml').write_text(
        (default_tasks_dir() / 'laterality.yaml').read_text(encoding='utf-8'), encoding='utf-8')
    assert main(['data', 'build', '--sample', '--tasks-dir', str(tmp_path / 'tasks'), '--out', str(tmp_path / 'o'),
                 '--num-proc', '1']) == 0
    summary = json.loads((tmp_path / 'o' / 'train' / 'build_summary.json').read_text(encoding='utf-8'))
    assert summary['rows_per_task'] == {'laterality': 16}   # 8 train photos with a side, EN + ZH


def test_shipped_templates_define_every_language_in_every_field():
    for path in sorted(default_tasks_dir().iterdir()):
        if path.suffix not in ('.yaml', '.yml'):
            continue
        data = yaml.safe_load(path.read_text(encoding='utf-8'))
        for field in ('prompts', 'answer', 'prompts_capped', 'answer_absent'):
            if field in data:
                assert set(data[field]) == {'en', 'zh'}, f'{path.name}: {field}'


def test_a_task_may_define_a_subset_of_the_languages_the_same_in_every_field(tmp_path, sample_train):
    from fundusexpert_plugin.sample import SAMPLE_DIR
    path = tmp_path / 'zh_report.yaml'
    path.write_text(ZH_ONLY_REPORT, encoding='utf-8')
    task = load_task(path)
    assert task.languages == ('zh',)
    rows = render_rows(sample_train['0003'], task, 'zh', RenderContext(tmp_path, SAMPLE_DIR))
    assert [r['lang'] for r in rows] == ['zh'] and rows[0]['messages'][0]['content'] == '<image>请描述这张眼底照片。'
    with pytest.raises(ValueError, match=r"zh_report\.yaml: task 'zh_report' defines no 'en' prompts"):
        render_rows(sample_train['0003'], task, 'en', RenderContext(tmp_path, SAMPLE_DIR))
    # answer in both languages, prompts in Chinese only: the fields disagree
    data = yaml.safe_load(ZH_ONLY_REPORT)
    data['answer']['en'] = '{chain}'
    with pytest.raises(FundusDataError, match=r"bad\.yaml: prompts: missing language\(s\) \['en'\]; every prompt "
                                              r"and answer field of a task must cover the same languages "
                                              r"\(here \['en', 'zh'\]\)"):
        load_task(_write(tmp_path, data))
    data['prompts'], data['answer'] = {}, {}
    with pytest.raises(FundusDataError, match=r"bad\.yaml: prompts: no language; give at least one of \['en', 'zh'\]"):
        load_task(_write(tmp_path, data))
    data['prompts'], data['answer'] = {'fr': ['Décrivez.']}, {'fr': '{chain}'}
    with pytest.raises(FundusDataError, match=r"prompts: unknown language\(s\) \['fr'\]"):
        load_task(_write(tmp_path, data))


def test_region_detection_prompts_read_for_one_structure_and_many_lesions(make_record, tmp_path):
    """Rows of a record with an optic disc (singular) and hard exudates (plural): every prompt the task
    may pick, as rendered, and the absent answer; no "all optic disc" / "所有视盘", no "There are no optic disc"."""
    from fundusexpert_plugin.core import vocab
    task = load_task(default_tasks_dir() / 'region_detection.yaml')
    assert task.version == 5
    assert [task.answer_absent['en'].format(target=t) for t in ('optic disc', 'hard exudates')] == [
        'The image shows no optic disc.', 'The image shows no hard exudates.']
    assert task.answer_absent['zh'].format(target='视盘') == '该图像中没有视盘。'
    rec = make_record([('optic_disc', (100, 100, 200, 200)), ('hard_exudates', (500, 60, 540, 100))])
    prompts = {lang: {row['target']: {row['messages'][0]['content']} for row in
                      render_rows(rec, task, lang, RenderContext(tmp_path, '.'))} for lang in ('en', 'zh')}
    assert set(prompts['en']) == {'optic_disc', 'hard_exudates', 'haemorrhages'}  # haemorrhages: the absent row
    assert [p.format(target='optic disc') for p in task.prompts['en']] == [
        'Locate the optic disc in this colour fundus photograph.',
        'Detect the optic disc in this fundus image and give the bounding-box coordinates.']
    assert [p.format(target='hard exudates') for p in task.prompts['en']] == [
        'Locate the hard exudates in this colour fundus photograph.',
        'Detect the hard exudates in this fundus image and give the bounding-box coordinates.']
    assert [p.format(target='视盘') for p in task.prompts['zh']] == [
        '请在这张彩色眼底照片中定位视盘。', '检测这张眼底图像中的视盘并给出边界框坐标。']
    for lang in ('en', 'zh'):
        (disc_prompt,) = prompts[lang]['optic_disc']
        assert disc_prompt.replace('<image>', '') in {p.format(target=vocab.ref_name('optic_disc', lang))
                                                      for p in task.prompts[lang]}
    for name in ('region_detection', 'mcq'):
        for lang, texts in load_task(default_tasks_dir() / f'{name}.yaml').prompts.items():
            assert not any('all {target}' in t or '所有{target}' in t for t in texts), (name, lang)


@pytest.mark.parametrize('field, value, expected', [
    ('version', 'true', 'version: Input should be a valid integer (got True)'),
    ('weight', 'true', 'weight: Input should be a valid number (got True)'),
    ('max_items_per_image', 'yes', 'max_items_per_image: Input should be a valid integer (got True)'),
    ('version', '"2"', "version: Input should be a valid integer (got '2')"),
    ('version', '1.0', 'version: Input should be a valid integer (got 1.0)'),
    ('version', 'one', "version: Input should be a valid integer (got 'one')"),
])
def test_a_number_field_takes_no_boolean_or_text_through_the_cli(tmp_path, capsys, field, value, expected):
    from fundusexpert_plugin.cli.main import main
    (tmp_path / 'tasks').mkdir()
    text = (default_tasks_dir() / 'laterality.yaml').read_text(encoding='utf-8')
    lines = [line for line in text.splitlines() if not line.startswith(f'{field}:')] + [f'{field}: {value}']
    path = tmp_path / 'tasks' / 'laterality.yaml'
    path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    assert main(['data', 'build', '--sample', '--tasks-dir', str(tmp_path / 'tasks'), '--out', str(tmp_path / 'o'),
                 '--num-proc', '1']) == 2
    out = capsys.readouterr()
    assert out.err.strip().splitlines() == [f'fundusexpert: error: {path}: {expected}']
    assert 'Traceback' not in out.err


def test_an_integer_weight_is_a_number(tmp_path):
    data = _base()
    data['weight'] = 2
    assert load_task(_write(tmp_path, data)).weight == 2.0


def test_default_tasks_dir_prefers_the_package_copy_and_never_a_stray_templates_folder(tmp_path, monkeypatch):
    from fundusexpert_plugin.tasks import config
    site = tmp_path / 'site'                                  # an installed copy beside another distribution's
    (site / 'fundusexpert_plugin' / 'tasks').mkdir(parents=True)
    (site / 'fundusexpert_plugin' / 'templates').mkdir()
    (site / 'templates').mkdir()
    monkeypatch.setattr(config, '__file__', str(site / 'fundusexpert_plugin' / 'tasks' / 'config.py'))
    assert config.default_tasks_dir() == (site / 'fundusexpert_plugin' / 'templates').resolve()
    (site / 'fundusexpert_plugin' / 'templates').rmdir()
    with pytest.raises(FileNotFoundError, match='no templates/ folder'):
        config.default_tasks_dir()
    checkout = tmp_path / 'repo'                              # a repository checkout: templates/ at its root
    (checkout / 'fundusexpert_plugin' / 'tasks').mkdir(parents=True)
    (checkout / 'templates').mkdir()
    (checkout / 'pyproject.toml').write_text('[project]\n')
    monkeypatch.setattr(config, '__file__', str(checkout / 'fundusexpert_plugin' / 'tasks' / 'config.py'))
    assert config.default_tasks_dir() == (checkout / 'templates').resolve()
