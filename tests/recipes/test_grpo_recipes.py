"""The GRPO recipes (examples/recipes/grpo_*.yaml via grpo.sh) parse with ms-swift's own `swift rlhf` parser.

As tests/recipes/test_recipes.py does for SFT: the command grpo.sh would run (``FUNDUS_RECIPE_DRY_RUN=1``) is
expanded like ``swift rlhf config.yaml`` (``swift.cli.main.parse_yaml_args``) and parsed with
``HfArgumentParser(RLHFArguments)`` at the argparse level; an unknown flag is a leftover argument.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / 'examples' / 'recipes'
GRPO_YAMLS = sorted(RECIPES.glob('grpo_*.yaml'))
CHECKPOINT = '/ckpt/sft/checkpoint-2324'


@pytest.fixture(scope='module')
def rlhf_parser():
    from transformers import HfArgumentParser

    from swift.arguments import RLHFArguments
    from swift.utils.utils import _patch_get_type_hints

    from fundusexpert_plugin.swift_plugin import registry
    registry.register_all()
    with _patch_get_type_hints():
        return HfArgumentParser([RLHFArguments])


def _dry_run(recipe, *args, **env):
    full_env = {k: v for k, v in os.environ.items()
                if k not in ('NPROC_PER_NODE', 'NNODES', 'CUDA_VISIBLE_DEVICES', 'USE_VLLM', 'MAX_PIXELS')}
    full_env.update({'FUNDUS_RECIPE_DRY_RUN': '1', 'PYTHON': sys.executable, **env})
    proc = subprocess.run(['bash', str(RECIPES / 'grpo.sh'), str(recipe.relative_to(REPO)), CHECKPOINT, *args],
                          capture_output=True, text=True, env=full_env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _parse(parser, argv):
    from test_recipes import _expand, _parse as parse_flags  # the SFT recipe test's helpers (same folder)
    return parse_flags(parser, _expand(argv))


def test_there_are_recipes_for_both_families_and_a_lora_one():
    assert {p.name for p in GRPO_YAMLS} >= {'grpo_internvl2_5_8b.yaml', 'grpo_qwen2_5_vl_7b.yaml',
                                            'grpo_qwen2_5_vl_7b_lora.yaml'}


@pytest.mark.parametrize('recipe', GRPO_YAMLS, ids=[p.stem for p in GRPO_YAMLS])
def test_grpo_recipe_parses_and_names_registered_things(rlhf_parser, recipe):
    from swift.dataset import DATASET_MAPPING
    from swift.dataset.dataset_syntax import DatasetSyntax
    from swift.rewards import orms
    from swift.template import TEMPLATE_MAPPING

    cmd = _dry_run(recipe, USE_VLLM='true')
    assert cmd['argv'][:3] == ['swift', 'rlhf', str(recipe.relative_to(REPO))]
    ns = _parse(rlhf_parser, cmd['argv'][2:])
    assert ns.rlhf_type == 'grpo' and ns.model == CHECKPOINT
    assert Path(ns.external_plugins[0]).is_file() and ns.use_vllm is True and ns.vllm_mode == 'colocate'
    assert ns.template in ('fundusexpert_qwen2_5_vl', 'fundusexpert_internvl2_5') and ns.template in TEMPLATE_MAPPING
    assert ns.reward_funcs[:2] == ['fundus_grounding', 'fundus_format']
    assert all(name in orms for name in ns.reward_funcs)
    if any('grounded_report' in d for d in ns.dataset):
        assert 'fundus_consistency' in ns.reward_funcs
    if ns.reward_weights:
        assert len(ns.reward_weights) == len(ns.reward_funcs)
    for spec in ns.dataset:
        syntax = DatasetSyntax.parse(spec)
        assert syntax.dataset in DATASET_MAPPING
        assert set(syntax.subsets) <= {s.name for s in DATASET_MAPPING[syntax.dataset].subsets}
    assert ns.num_generations >= 2 and 0 < ns.beta < 1 and ns.temperature > 0
    # GRPO needs the generation batch of one node to hold whole groups: 8 GPUs for the full recipes, 1 for LoRA
    gpus = 1 if ns.tuner_type == 'lora' else 8
    assert (ns.per_device_train_batch_size * ns.gradient_accumulation_steps * gpus) % ns.num_generations == 0
    env = yaml.safe_load(recipe.read_text(encoding='utf-8'))['ENV']
    if ns.template == 'fundusexpert_qwen2_5_vl':
        # the Qwen boxes are resized-image pixels: the pixel budget must be the SFT recipe's
        sft = yaml.safe_load((RECIPES / 'fundusexpert_qwen2_5_vl_7b.yaml').read_text(encoding='utf-8'))['ENV']
        assert env['MAX_PIXELS'] == sft['MAX_PIXELS']
    else:
        assert (env['MAX_NUM'], env['INPUT_SIZE']) == (6, 448)


def test_lora_recipe_is_one_gpu_lora_without_deepspeed(rlhf_parser):
    cmd = _dry_run(RECIPES / 'grpo_qwen2_5_vl_7b_lora.yaml', USE_VLLM='false', CUDA_VISIBLE_DEVICES='0')
    ns = _parse(rlhf_parser, cmd['argv'][2:])
    assert ns.tuner_type == 'lora' and ns.deepspeed is None and ns.use_vllm is False
    assert 'NPROC_PER_NODE' not in cmd['env']


def test_grpo_sh_uses_transformers_rollout_without_vllm_and_passes_extra_flags(rlhf_parser):
    import importlib.util
    cmd = _dry_run(RECIPES / 'grpo_qwen2_5_vl_7b.yaml', '--max_steps', '3')
    ns = _parse(rlhf_parser, cmd['argv'][2:])
    assert ns.use_vllm is (importlib.util.find_spec('vllm') is not None)
    assert ns.max_steps == 3
