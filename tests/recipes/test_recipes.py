"""Every recipe in examples/recipes parses with ms-swift's own argument parser and names registered things.

No training and no download: the command each launcher would run (``FUNDUS_RECIPE_DRY_RUN=1``) is expanded the
way ``swift sft config.yaml`` expands it (``swift.cli.main.parse_yaml_args``) and parsed with
``HfArgumentParser(SftArguments / InferArguments)`` at the argparse level, i.e. without ``__post_init__`` (which
would resolve the hub model ids). A renamed or removed flag then shows up as a leftover argument, as it does in
``swift sft`` itself (``ValueError: remaining_argv``).
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
YAMLS = sorted(p for p in RECIPES.glob('*.yaml') if not p.name.startswith('grpo_'))  # GRPO: test_grpo_recipes.py
PAPER_ZH_SYSTEM = '你是FundusExpert，是一个有用无害的人工智能助手。'


@pytest.fixture(scope='module')
def swift_parsers():
    """swift's sft / infer parsers, built after importing the plugin (as --external_plugins would)."""
    from transformers import HfArgumentParser

    from swift.arguments import InferArguments, SftArguments
    from swift.utils.utils import _patch_get_type_hints

    from fundusexpert_plugin.swift_plugin import registry
    registry.register_all()
    with _patch_get_type_hints():  # what swift.utils.parse_args does before building the parser
        return {'sft': HfArgumentParser([SftArguments]), 'infer': HfArgumentParser([InferArguments])}


def _dry_run(script, *args, **env):
    full_env = {k: v for k, v in os.environ.items()
                if k not in ('NPROC_PER_NODE', 'NNODES', 'NODE_RANK', 'MASTER_ADDR', 'CUDA_VISIBLE_DEVICES',
                             'FUNDUS_GLOBAL_BATCH', 'PER_DEVICE_TRAIN_BATCH_SIZE', 'MAX_NUM', 'INPUT_SIZE',
                             'MAX_PIXELS', 'INFER_BACKEND', 'ATTN_IMPL')}
    full_env.update({'FUNDUS_RECIPE_DRY_RUN': '1', 'PYTHON': sys.executable, 'ATTN_IMPL': 'sdpa',
                     'FUNDUSGEN_DIR': '/data/fundusgen/train', **env})
    proc = subprocess.run(['bash', str(RECIPES / script), *args], capture_output=True, text=True, env=full_env,
                          cwd=REPO)
    return proc


def _command(script, *args, **env):
    proc = _dry_run(script, *args, **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _expand(argv):
    """``swift <cmd> config.yaml ...`` -> flags, with swift's own expansion (its ENV side effects undone)."""
    from swift.cli.main import parse_yaml_args
    argv = list(argv)
    saved = dict(os.environ)
    try:
        parse_yaml_args(argv)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return argv


def _parse(parser, argv):
    namespace, rest = parser.parse_known_args(argv)
    assert rest == [], f'ms-swift does not know these arguments: {rest}'
    return namespace


def _sft_namespace(swift_parsers, recipe, **env):
    cmd = _command('sft.sh', str(recipe.relative_to(REPO)), **env)
    assert cmd['argv'][:3] == ['swift', 'sft', str(recipe.relative_to(REPO))]
    return _parse(swift_parsers['sft'], _expand(cmd['argv'][2:])), cmd


def test_the_check_itself_rejects_a_renamed_flag(swift_parsers):
    _, rest = swift_parsers['sft'].parse_known_args(['--train_type', 'full'])  # the 3.x spelling
    assert rest == ['--train_type', 'full']
    parsed = _parse(swift_parsers['sft'], ['--tuner_type', 'full', '--loss_type', 'fundus_grounding'])
    assert parsed.tuner_type == 'full' and parsed.loss_type == 'fundus_grounding'


@pytest.mark.parametrize('recipe', YAMLS, ids=[p.stem for p in YAMLS])
def test_recipe_parses_and_names_registered_things(swift_parsers, recipe):
    from swift.arguments.base_args.base_args import get_supported_tuners
    from swift.dataset import DATASET_MAPPING
    from swift.dataset.dataset_syntax import DatasetSyntax
    from swift.loss import loss_map
    from swift.loss_scale import get_loss_scale
    from swift.model.model_meta import get_matched_model_meta
    from swift.template import TEMPLATE_MAPPING

    ns, cmd = _sft_namespace(swift_parsers, recipe, NPROC_PER_NODE='4')
    assert Path(ns.external_plugins[0]).is_file()
    meta = get_matched_model_meta(ns.model)
    assert meta is not None, f'{recipe.name}: {ns.model} is not a model id swift registers'
    assert ns.template in TEMPLATE_MAPPING, f'{recipe.name}: unknown template {ns.template}'
    # the recipe's template must be the model's own template or a subclass of it (our templates)
    stock = TEMPLATE_MAPPING[meta.template].template_cls
    assert issubclass(TEMPLATE_MAPPING[ns.template].template_cls, stock), \
        f'{recipe.name}: template {ns.template} does not fit {ns.model} (swift uses {meta.template})'
    for spec in ns.dataset:
        syntax = DatasetSyntax.parse(spec)
        assert syntax.dataset in DATASET_MAPPING, f'{recipe.name}: dataset {spec} is not registered'
        known = {s.name for s in DATASET_MAPPING[syntax.dataset].subsets} | {'all'}
        assert set(syntax.subsets) <= known, f'{recipe.name}: unknown subsets {syntax.subsets}'
    if ns.loss_type is not None:
        assert ns.loss_type in loss_map
    get_loss_scale(ns.loss_scale)  # raises for an unknown name
    assert ns.tuner_type in get_supported_tuners()
    if ns.deepspeed:
        import swift
        assert (Path(swift.__file__).parent / 'config' / f'{ns.deepspeed}.json').is_file()
    # sft.sh keeps the recipe's global batch on 4 GPUs
    env = yaml.safe_load(recipe.read_text(encoding='utf-8'))['ENV']
    assert ns.per_device_train_batch_size * ns.gradient_accumulation_steps * 4 == env['FUNDUS_GLOBAL_BATCH']
    assert cmd['env']['NPROC_PER_NODE'] == '4'
    assert ns.torch_dtype == 'bfloat16' and ns.gradient_checkpointing and ns.max_length == 8192
    assert ns.num_train_epochs == 1 and ns.warmup_ratio == 0.03 and ns.lr_scheduler_type == 'cosine'
    if ns.template == 'fundusexpert_internvl2_5':  # remote-code InternVL2.5: paper system prompt, tiles via env
        assert ns.system == PAPER_ZH_SYSTEM
        assert (env['MAX_NUM'], env['INPUT_SIZE']) == (6, 448)


@pytest.mark.parametrize('recipe, lr, weight_decay, per_device', [
    ('fundusexpert_internvl2_5_8b.yaml', 4e-5, 0.05, 4),
    ('fundusexpert_mini_internvl2_5_1b.yaml', 5e-5, 0.01, 16),
])
def test_paper_recipes_carry_the_paper_settings(swift_parsers, recipe, lr, weight_decay, per_device):
    ns, _ = _sft_namespace(swift_parsers, RECIPES / recipe, NPROC_PER_NODE='4')
    assert ns.model.startswith('OpenGVLab/InternVL2_5-') and ns.template == 'fundusexpert_internvl2_5'
    assert (ns.learning_rate, ns.weight_decay, ns.per_device_train_batch_size) == (lr, weight_decay, per_device)
    assert ns.per_device_train_batch_size * ns.gradient_accumulation_steps * 4 == 128
    assert ns.tuner_type == 'full' and not ns.freeze_vit and not ns.freeze_aligner and not ns.freeze_llm
    assert ns.deepspeed == 'zero3' and ns.dataset == ['fundusgen']
    assert ns.loss_type is None and ns.loss_scale == 'default'  # the paper trains with plain cross-entropy
    assert (ns.save_steps, ns.save_total_limit) == (200, 1)
    # AdamW as in the paper (swift's own default beta2 is 0.95)
    assert (ns.adam_beta1, ns.adam_beta2, ns.adam_epsilon, ns.max_grad_norm) == (0.9, 0.999, 1e-8, 1.0)


@pytest.mark.parametrize('recipe', [p for p in YAMLS if 'qwen' in p.stem], ids=lambda p: p.stem)
def test_qwen_recipes_switch_on_the_grounding_loss(swift_parsers, recipe):
    ns, _ = _sft_namespace(swift_parsers, recipe)
    assert ns.loss_type == 'fundus_grounding' and ns.loss_scale == 'fundus_grounding'


@pytest.mark.parametrize('nproc, nnodes, accumulation', [('1', None, 32), ('4', None, 8), ('8', '2', 2)])
def test_sft_sh_keeps_the_global_batch_for_any_world_size(swift_parsers, nproc, nnodes, accumulation):
    env = {'NPROC_PER_NODE': nproc}
    if nnodes:
        env.update(NNODES=nnodes, NODE_RANK='1', MASTER_ADDR='10.0.0.1')
    cmd = _command('fundusexpert.sh', '--max_steps', '5', **env)  # the one-command wrapper of the 8B recipe
    ns = _parse(swift_parsers['sft'], _expand(cmd['argv'][2:]))
    assert ns.gradient_accumulation_steps == accumulation and ns.max_steps == 5  # flags after the YAML win
    assert cmd['env'] == env


def test_sft_sh_refuses_a_world_size_that_breaks_the_global_batch():
    proc = _dry_run('sft.sh', 'examples/recipes/fundusexpert_internvl2_5_8b.yaml', NPROC_PER_NODE='3')
    assert proc.returncode == 2 and 'global batch 128 is not a multiple' in proc.stderr
    ok = _command('sft.sh', 'examples/recipes/fundusexpert_internvl2_5_8b.yaml', NPROC_PER_NODE='3',
                  PER_DEVICE_TRAIN_BATCH_SIZE='1', FUNDUS_GLOBAL_BATCH='120')
    flags = ok['argv'][3:]
    assert flags[flags.index('--per_device_train_batch_size'):][:4] == \
        ['--per_device_train_batch_size', '1', '--gradient_accumulation_steps', '40']


@pytest.mark.parametrize('backend', ['vllm', 'transformers'])
def test_infer_sh_parses_with_swift_infer_arguments(swift_parsers, backend):
    cmd = _command('infer.sh', '/ckpt/checkpoint-2324', INFER_BACKEND=backend,
                   RECIPE=str(RECIPES / 'fundusexpert_internvl2_5_8b.yaml'))
    assert cmd['argv'][:2] == ['swift', 'infer'] and cmd['env']['MAX_NUM'] == '6'  # the recipe's ENV travels
    ns = _parse(swift_parsers['infer'], cmd['argv'][2:])
    assert ns.infer_backend == backend and ns.val_dataset == ['fundusgen_heldout'] and ns.temperature == 0
    if backend == 'vllm':
        assert json.loads(ns.vllm_engine_kwargs) == {'mm_processor_kwargs': {'max_dynamic_patch': 6}}


def test_infer_sh_passes_a_lora_checkpoint_as_adapters(swift_parsers, tmp_path):
    (tmp_path / 'adapter_config.json').write_text('{}')
    cmd = _command('infer.sh', str(tmp_path), INFER_BACKEND='transformers')
    ns = _parse(swift_parsers['infer'], cmd['argv'][2:])
    assert ns.adapters == [str(tmp_path)] and ns.model is None


def _nul_commands(stdout):
    return [line.split('\0')[:-1] for line in stdout.splitlines() if line]


def test_engine_scripts_use_existing_flags():
    from fundusexpert_plugin.cli import engine as cli
    paths = {'IMAGES': '/data/photos', 'DETECTOR': 'det.py', 'CHECKPOINT': 'det.pth', 'OUT': '/data/out'}
    shards = _nul_commands(_dry_run('engine_shards.sh', NUM_SHARDS='3', ENGINE_ARGS='--tile-size 1024', **paths).stdout)
    parser = __import__('argparse').ArgumentParser()
    cli.add_arguments(parser)
    assert all(cmd[:3] == ['fundusexpert', 'engine', 'run'] for cmd in shards)
    specs = [parser.parse_args(cmd[2:]).shard for cmd in shards]
    assert specs == ['0/3', '1/3', '2/3']
    (ray_cmd,) = _nul_commands(_dry_run('engine_ray.sh', NUM_ACTORS='8', GPUS_PER_ACTOR='0.5', **paths).stdout)
    assert ray_cmd[:3] == ['fundusexpert', 'engine', 'ray']
    args = parser.parse_args(ray_cmd[2:])
    assert (args.num_actors, args.num_gpus_per_actor, args.address) == (8, 0.5, 'auto')
