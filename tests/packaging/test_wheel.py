"""A wheel built from this checkout installs non-editable and works without the checkout."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHECK = r'''
import json, sys
import fundusexpert_plugin
from fundusexpert_plugin.cli.main import main
from fundusexpert_plugin.tasks.config import default_tasks_dir
rc = main(['data', 'build', '--sample', '--out', sys.argv[1]])
from fundusexpert_plugin.swift_plugin.registry import register_all
register_all()
from swift.dataset import DATASET_MAPPING
from swift.template import TEMPLATE_MAPPING
print(json.dumps({'rc': rc, 'package': fundusexpert_plugin.__file__, 'tasks_dir': str(default_tasks_dir()),
                  'templates': sorted(t for t in TEMPLATE_MAPPING if t.startswith('fundusexpert')),
                  'subsets': sorted(s.name for s in DATASET_MAPPING['fundusgen'].subsets)}))
'''


@pytest.mark.slow
def test_wheel_installs_non_editable_builds_the_sample_and_registers_with_swift(tmp_path):
    wheel_dir, target = tmp_path / 'wheel', tmp_path / 'site'
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation',
                    '-w', str(wheel_dir), str(REPO)], check=True, capture_output=True)
    wheels = list(wheel_dir.glob('fundusexpert_plugin-*.whl'))
    assert len(wheels) == 1
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--no-compile',
                    '--target', str(target), str(wheels[0])], check=True, capture_output=True)
    # the installed copy comes first on the path; the run happens away from the checkout
    env = {**os.environ, 'PYTHONPATH': str(target), 'FUNDUSEXPERT_CACHE': str(tmp_path / 'cache'),
           'HF_HUB_OFFLINE': '1'}
    out = subprocess.run([sys.executable, '-c', CHECK, str(tmp_path / 'fundusgen')], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result['rc'] == 0
    assert result['package'].startswith(str(target))
    assert result['tasks_dir'] == str(target / 'fundusexpert_plugin' / 'templates')
    assert {'fundusexpert_qwen2_5_vl', 'fundusexpert_internvl', 'fundusexpert_internvl2_5'} <= set(result['templates'])
    shipped = sorted(p.stem for p in (REPO / 'templates').glob('*.yaml'))
    assert set(shipped) <= set(result['subsets'])
    for split in ('train', 'heldout'):
        rows = (tmp_path / 'fundusgen' / split / 'region_detection.jsonl').read_text().splitlines()
        assert rows and json.loads(rows[0])['task'] == 'region_detection'
