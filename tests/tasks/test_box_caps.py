"""Box caps: an "all" prompt gets every box; a capped task says so and records the full ground truth."""
import pytest
import yaml

from fundusexpert_plugin.tasks.config import TaskConfig, default_tasks_dir, load_task
from fundusexpert_plugin.tasks.render import RenderContext, render_rows

# 17 haemorrhage boxes: box i is (10 i, 0, 10 i + 5 + i, 5 + i): widths and heights 5 + i, so box 16 is
# the largest (21 x 21) and the record lists them largest first: i = 16, 15, ..., 0
HAEMS = [('haemorrhages', (10 * i, 0, 10 * i + 5 + i, 5 + i)) for i in range(17)]


def _task(**overrides) -> TaskConfig:
    data = yaml.safe_load((default_tasks_dir() / 'region_detection.yaml').read_text())
    data.update(overrides)
    task = TaskConfig.model_validate(data)
    task.check_placeholders()
    return task


def _rows(record, task, lang='en', tmp_path='.'):
    return [r for r in render_rows(record, task, lang, RenderContext(tmp_path, '.')) if r['target'] == 'haemorrhages']


def test_shipped_region_detection_answers_every_box(make_record, tmp_path):
    task = load_task(default_tasks_dir() / 'region_detection.yaml')
    assert task.max_boxes is None and task.version == 5
    (row,) = _rows(make_record(HAEMS), task, tmp_path=tmp_path)
    assert row['messages'][1]['content'] == '<ref-object>' + '<bbox>' * 17
    assert len(row['objects']['bbox']) == 17 and row['objects']['bbox'][0] == [160.0, 0.0, 181.0, 21.0]
    assert (row['box_cap'], row['n_boxes'], row['n_boxes_shown']) == (None, {'haemorrhages': 17},
                                                                       {'haemorrhages': 17})
    assert 'full_gt_boxes_px' not in row


def test_a_capped_task_says_the_cap_and_keeps_the_full_ground_truth(make_record, tmp_path):
    task = _task(max_boxes=10, prompts_capped={'en': ['Locate the {max_boxes} largest {target}.'],
                                               'zh': ['定位最大的{max_boxes}处{target}。']})
    rec = make_record(HAEMS)
    for lang, prompt in (('en', '<image>Locate the 10 largest haemorrhages.'), ('zh', '<image>定位最大的10处出血。')):
        (row,) = _rows(rec, task, lang, tmp_path)
        assert row['messages'][0]['content'] == prompt
        assert len(row['objects']['bbox']) == 10 and row['objects']['bbox'][-1] == [70.0, 0.0, 82.0, 12.0]  # i = 7
        assert (row['box_cap'], row['n_boxes'], row['n_boxes_shown']) == (10, {'haemorrhages': 17},
                                                                          {'haemorrhages': 10})
        assert len(row['full_gt_boxes_px']) == 17
        assert row['full_gt_boxes_px'][16] == ['haemorrhages', [0.0, 0.0, 5.0, 5.0]]   # i = 0, the smallest
    # a record under the cap keeps the "all" prompts and every box
    (row,) = _rows(make_record(HAEMS[:4]), task, tmp_path=tmp_path)
    assert row['messages'][0]['content'] in {'<image>' + p.format(target='haemorrhages') for p in task.prompts['en']}
    assert len(row['objects']['bbox']) == 4 and 'full_gt_boxes_px' not in row


# the 10 largest of 14 mask clusters kept (data convert --max-boxes 10): boxes i = 16 .. 7 of HAEMS
SOURCE_CAPPED = dict(provenance={'source_dataset': 'test', 'licence': 'CC0', 'annotated_labels': ['optic_disc'],
                                 'region_counts': {'haemorrhages': 14}})


def test_a_record_that_kept_its_largest_regions_asks_for_the_largest(make_record, tmp_path):
    rec = make_record(HAEMS[7:], **SOURCE_CAPPED)
    assert rec.region_count('haemorrhages') == 14 and rec.region_count('optic_disc') == 0
    task = load_task(default_tasks_dir() / 'region_detection.yaml')
    for lang, prompt in (('en', '<image>Locate the 10 largest haemorrhages in this colour fundus photograph.'),
                         ('zh', '<image>请在这张彩色眼底照片中定位最大的10处出血。')):
        (row,) = _rows(rec, task, lang, tmp_path)
        assert row['messages'][0]['content'] == prompt
        assert len(row['objects']['bbox']) == 10 and row['n_boxes_shown'] == {'haemorrhages': 10}
    # a task cap below the kept boxes: "the 5 largest"
    capped = _task(max_boxes=5, prompts_capped={'en': ['Locate the {max_boxes} largest {target}.'],
                                                'zh': ['定位最大的{max_boxes}处{target}。']})
    (row,) = _rows(rec, capped, 'en', tmp_path)
    assert row['messages'][0]['content'] == '<image>Locate the 5 largest haemorrhages.'
    assert row['objects']['bbox'][-1] == [120.0, 0.0, 137.0, 17.0]   # i = 12, the fifth largest
    # a task with no prompt that can say so writes no row for that class (not "all" with 10 of 14)
    data = yaml.safe_load((default_tasks_dir() / 'region_detection.yaml').read_text())
    del data['prompts_capped']
    plain = TaskConfig.model_validate(data)
    assert _rows(rec, plain, 'en', tmp_path) == []
    assert len(_rows(make_record(HAEMS[7:]), plain, 'en', tmp_path)) == 1     # without the count: all 10


def test_region_counts_must_exceed_the_boxes(make_record):
    with pytest.raises(ValueError, match=r'region_counts\.haemorrhages: 10 regions, but the record has 10'):
        make_record(HAEMS[7:], provenance={**SOURCE_CAPPED['provenance'], 'region_counts': {'haemorrhages': 10}})
    with pytest.raises(ValueError, match='region_counts'):
        make_record(HAEMS[7:], provenance={**SOURCE_CAPPED['provenance'], 'region_counts': {'haemorrhages': '14'}})
    rec = make_record(HAEMS[7:], provenance={**SOURCE_CAPPED['provenance'], 'region_counts': {'haemorrhage': 14}})
    assert rec.provenance.region_counts == {'haemorrhages': 14}     # alias resolved


def test_a_cap_without_prompts_that_say_so_is_refused():
    with pytest.raises(ValueError, match='prompts_capped: max_boxes 10 is set'):
        _task(max_boxes=10, prompts_capped=None)
    with pytest.raises(ValueError, match=r'prompts_capped\.en\[0\]: must state the cap'):
        _task(max_boxes=10, prompts_capped={'en': ['Locate the {target}.'], 'zh': ['定位最大的{max_boxes}处{target}。']})


def test_grounded_report_rows_record_the_cap(make_record, tmp_path):
    task = load_task(default_tasks_dir() / 'grounded_report.yaml')
    assert task.max_boxes == 5 and task.version == 2
    rec = make_record([('optic_disc', (300, 300, 400, 400)), *HAEMS], laterality='left')
    (row,) = render_rows(rec, task, 'en', RenderContext(tmp_path, '.'))
    assert '17 regions (5 of 17 shown, the largest)' in row['messages'][1]['content']
    assert row['n_boxes'] == {'optic_disc': 1, 'haemorrhages': 17}
    assert row['n_boxes_shown'] == {'optic_disc': 1, 'haemorrhages': 5} and row['box_cap'] == 5
    assert len(row['full_gt_boxes_px']) == 1 + 17 and row['full_gt_boxes_px'][0] == ['optic_disc',
                                                                                     [300.0, 300.0, 400.0, 400.0]]


def test_reports_count_the_regions_of_a_source_that_kept_its_largest(make_record, tmp_path):
    rec = make_record([('optic_disc', (300, 300, 400, 400)), *HAEMS[7:]], laterality='left', **SOURCE_CAPPED)
    grounded = render_rows(rec, load_task(default_tasks_dir() / 'grounded_report.yaml'), 'en',
                           RenderContext(tmp_path, '.'))[0]['messages'][1]['content']
    assert '14 regions (5 of 14 shown, the largest)' in grounded
    for lang, phrase in (('en', '14 regions (the 10 largest located)'), ('zh', '14处（定位其中最大的10处）')):
        plain = render_rows(rec, load_task(default_tasks_dir() / 'report.yaml'), lang,
                            RenderContext(tmp_path, '.'))[0]['messages'][1]['content']
        assert phrase in plain, plain
    # without the count, 10 boxes are 10 regions
    plain = render_rows(make_record([('optic_disc', (300, 300, 400, 400)), *HAEMS[7:]], laterality='left'),
                        load_task(default_tasks_dir() / 'report.yaml'), 'en',
                        RenderContext(tmp_path, '.'))[0]['messages'][1]['content']
    assert '10 regions' in plain and 'largest located' not in plain
