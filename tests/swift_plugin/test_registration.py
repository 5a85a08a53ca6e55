"""Registration with ms-swift and dataset loading through swift's own load_dataset."""
import json
import subprocess
import sys

import pytest

from fundusexpert_plugin.swift_plugin.registry import plugin_path


def test_plugin_registers_every_name(swift_registered):
    from swift.dataset import DATASET_MAPPING
    from swift.template import TEMPLATE_MAPPING
    assert {'fundusexpert_qwen2_5_vl', 'fundusexpert_internvl'} <= set(TEMPLATE_MAPPING)
    subsets = {s.name for s in DATASET_MAPPING['fundusgen'].subsets}
    assert {'diagnosis', 'grading', 'region_detection', 'region_identification', 'report', 'grounded_report',
            'mcq'} <= subsets


def test_second_registration_raises_without_exist_ok(swift_registered):
    from fundusexpert_plugin.swift_plugin import templates
    with pytest.raises(ValueError, match='already'):
        templates.register(exist_ok=False)


def test_importing_engine_and_eval_does_not_import_swift():
    code = ('import sys, fundusexpert_plugin.build, fundusexpert_plugin.render.chain, fundusexpert_plugin.eval.parse, '
            'fundusexpert_plugin.eval.grounding; print("swift" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == 'False'


def test_plugin_file_imports_by_basename_like_swift_does():
    # swift's import_external_file: sys.path.insert(0, dirname); import_module(basename)
    code = (f'import sys, os; p = {plugin_path()!r}; sys.path.insert(0, os.path.dirname(p)); '
            'import importlib; importlib.import_module("fundusexpert_swift_plugin"); '
            'from swift.template import TEMPLATE_MAPPING; print("fundusexpert_internvl" in TEMPLATE_MAPPING)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == 'True', out.stderr[-2000:]


def test_load_dataset_subset_from_built_sample(swift_registered):
    from swift import load_dataset
    train, val = load_dataset(['fundusgen:region_detection'])
    # 8 photos x 3 CODRAS classes x 2 languages, + the fovea of 5 photos x 2 languages (IDRiD centres)
    assert len(train) == 48 + 10 and val is None
    row = train[0]
    assert set(row) == {'messages', 'images', 'objects', 'dataset'}
    assert row['objects']['ref'] == ['optic disc'] and row['objects']['bbox'] == [[166.25, 239.5, 316.0, 407.0]]
    assert row['images'][0]['path'].endswith('fundusexpert_plugin/sample/images/0003.jpg')
    # all tasks; grading, image_quality and vertical_cdr have no rows in the sample;
    # laterality (16 rows) has weight 0.5 -> 8 rows
    everything, _ = load_dataset(['fundusgen'])
    # the fovea of 5 train photos adds 2 mcq, 10 region-detection and 2 region-identification rows
    assert len(everything) == 16 + 16 + 32 + 58 + 46 + 16 + 8


def test_unknown_subset_and_empty_task_errors(swift_registered):
    from swift import load_dataset
    with pytest.raises(KeyError, match=r"unknown FundusGen subset\(s\) \['detection'\]; tasks in"):
        load_dataset(['fundusgen:detection'])
    with pytest.raises(KeyError, match=r"\['region_detecton'\]; tasks in .*; did you mean region_detection\?"):
        load_dataset(['fundusgen:region_detecton'])
    with pytest.raises(ValueError, match=r"grading\.jsonl: task 'grading' has no rows"):
        load_dataset(['fundusgen:grading'])


def test_custom_dataset_info_file_covers_every_task_and_loads(swift_registered, tmp_path, monkeypatch):
    """dataset_info/fundusgen.json reads <repo>/fundusgen/{train,heldout}; rebuild that layout in tmp."""
    import shutil
    from swift import load_dataset
    from swift.dataset import register_dataset_info
    from fundusexpert_plugin.build import build_sample
    from fundusexpert_plugin.tasks.config import default_tasks_dir, load_tasks
    info = default_tasks_dir().parent / 'dataset_info' / 'fundusgen.json'
    names = [d['dataset_name'] for d in json.loads(info.read_text())]
    tasks = [t.name for t in load_tasks()]
    assert sorted(names) == sorted([f'fundusgen_{t}' for t in tasks] + [f'fundusgen_heldout_{t}' for t in tasks])
    (tmp_path / 'dataset_info').mkdir()
    shutil.copy(info, tmp_path / 'dataset_info' / 'fundusgen.json')
    build_sample(tmp_path / 'fundusgen')
    register_dataset_info(str(tmp_path / 'dataset_info' / 'fundusgen.json'))
    train, _ = load_dataset(['fundusgen_heldout_region_detection'])
    # 4 held-out photos x 3 classes x 2 languages, + the fovea of 0015 x 2 languages
    assert len(train) == 24 + 2 and train[0]['objects']['ref'] == ['optic disc']


def test_weighted_indices_repeat_and_subsample():
    from fundusexpert_plugin.swift_plugin.datasets import weighted_indices
    assert weighted_indices(4, 1.0) == [0, 1, 2, 3]
    two_and_half = weighted_indices(4, 2.5)          # 10 rows: every row twice + 2 sampled
    assert len(two_and_half) == 10 and all(two_and_half.count(i) >= 2 for i in range(4))
    half = weighted_indices(4, 0.5)
    assert len(half) == 2 and len(set(half)) == 2


def test_a_task_without_rows_in_the_built_language_is_named_so(swift_registered, tmp_path):
    from swift import load_dataset
    from swift.dataset import DatasetMeta, SubsetDataset, register_dataset
    from fundusexpert_plugin.build import build_fundusgen
    from fundusexpert_plugin.sample import SAMPLE_DIR, sample_records
    from fundusexpert_plugin.swift_plugin.datasets import FundusGenLoader
    from fundusexpert_plugin.tasks.config import load_task
    (tmp_path / 'zh_report.yaml').write_text(
        'name: zh_report\nkind: report\nversion: 1\nprompts:\n  zh: ["请描述这张眼底照片。"]\nanswer:\n  zh: "{chain}"\n',
        encoding='utf-8')
    summary = build_fundusgen(sample_records('heldout'), tmp_path / 'fg', image_dir=SAMPLE_DIR,
                              tasks=[load_task(tmp_path / 'zh_report.yaml')], languages=['en'])
    assert summary.rows_per_task == {'zh_report': 0} and summary.task_languages_missing == {'zh_report': {'en': 4}}
    register_dataset(DatasetMeta(dataset_name='fundusgen_zh_only_test', dataset_path=str(tmp_path / 'fg'),
                                 subsets=[SubsetDataset(name='zh_report', subset='zh_report')],
                                 loader=FundusGenLoader), exist_ok=True)
    with pytest.raises(ValueError, match=r"zh_report\.jsonl: task 'zh_report' has no rows: it defines no en prompts"):
        load_dataset(['fundusgen_zh_only_test:zh_report'])


def test_the_sample_fallback_is_announced_and_a_build_top_folder_is_pointed_to_its_splits(swift_registered, tmp_path,
                                                                                          caplog):
    """FUNDUSGEN_DIR unset: one warning says the bundled sample is used. A dataset folder that is the top of
    `data build --sample --out` (train/ + heldout/) gets told which split folder to give."""
    from swift import load_dataset
    from swift.dataset import DatasetMeta, SubsetDataset, register_dataset
    from fundusexpert_plugin.build import build_sample
    from fundusexpert_plugin.swift_plugin.datasets import FundusGenLoader
    with caplog.at_level('WARNING'):
        load_dataset(['fundusgen:report'])
    assert '$FUNDUSGEN_DIR is not set, so the bundled 12-photograph sample is used' in caplog.text
    build_sample(tmp_path / 'fundusgen', languages=['en'])
    register_dataset(DatasetMeta(dataset_name='fundusgen_top_test', dataset_path=str(tmp_path / 'fundusgen'),
                                 subsets=[SubsetDataset(name='report', subset='report')], loader=FundusGenLoader),
                     exist_ok=True)
    with pytest.raises(FileNotFoundError) as exc:
        load_dataset(['fundusgen_top_test:report'])
    assert str(exc.value).endswith(f"is not a FundusGen folder; it holds the split folder(s) ['heldout', 'train']: "
                                   f"point it at one of them, e.g. {tmp_path / 'fundusgen' / 'heldout'}")


def test_the_subsets_of_a_folder_are_the_tasks_its_build_summary_lists(swift_registered, tmp_path, caplog):
    """A .jsonl the builder did not write (records, notes, a task file left by hand) is not a subset."""
    from swift import load_dataset
    from swift.dataset import DatasetMeta, SubsetDataset, register_dataset
    from fundusexpert_plugin.build import build_fundusgen
    from fundusexpert_plugin.sample import SAMPLE_DIR, sample_records
    from fundusexpert_plugin.swift_plugin.datasets import FundusGenLoader
    from fundusexpert_plugin.tasks.config import load_tasks
    tasks = [t for t in load_tasks() if t.name in ('report', 'laterality')]
    build_fundusgen(sample_records('heldout'), tmp_path / 'fg', image_dir=SAMPLE_DIR, tasks=tasks, languages=['en'])
    report = (tmp_path / 'fg' / 'report.jsonl').read_text(encoding='utf-8')
    (tmp_path / 'fg' / 'lesion_list.jsonl').write_text(report, encoding='utf-8')   # same rows, not of this build
    register_dataset(DatasetMeta(dataset_name='fundusgen_listed_test', dataset_path=str(tmp_path / 'fg'),
                                 subsets=[SubsetDataset(name=n, subset=n) for n in ('report', 'lesion_list')],
                                 loader=FundusGenLoader), exist_ok=True)
    with caplog.at_level('INFO', logger='fundusexpert_plugin.swift_plugin.datasets'):
        everything, _ = load_dataset(['fundusgen_listed_test'])
    # 4 held-out records: 4 report rows + 4 laterality rows at weight 0.5 -> 2; lesion_list.jsonl's 4 rows not read
    assert len(everything) == 4 + 2
    assert f"{tmp_path / 'fg'}: lesion_list.jsonl is not a task of its build_summary.json; not loaded" in caplog.text
    with pytest.raises(KeyError, match=r"unknown FundusGen subset\(s\) \['lesion_list'\]; tasks in .*: "
                                       r"\['laterality', 'report'\]"):
        load_dataset(['fundusgen_listed_test:lesion_list'])
