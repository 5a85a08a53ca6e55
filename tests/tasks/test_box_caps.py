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
    assert task.max_boxes is None and task.version == 4
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


def test_a_cap_without_prompts_that_say_so_is_refused():
    with pytest.raises(ValueError, match='prompts_capped: max_boxes 10 is set'):
        _task(max_boxes=10)
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
