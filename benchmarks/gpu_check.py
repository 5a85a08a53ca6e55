"""GPU check: ``swift sft`` / ``swift infer`` throughput and peak memory of the plugin on one machine, offline.

Run through ``benchmarks/gpu_check.sh`` (sets the offline environment)::

    bash benchmarks/gpu_check.sh                 # one GPU: ~1B random Qwen2.5-VL, bf16, 20 steps per arm (< 8 min)
    bash benchmarks/gpu_check.sh --tiny          # CPU smoke run: the 10 M tiny model, 3 steps per arm (< 3 min)

What one run does, with nothing downloaded:

1. FundusGen of the bundled sample (``train``: 186 rows over 7 tasks; ``heldout``: 90 rows).
2. A Qwen2.5-VL built from a config with random weights: about 1.0 B parameters (:func:`one_b_config`: the
   Qwen2.5-VL vision tower cut to 16 blocks, a 12-layer 1536-wide text decoder, the 151,680-row vocabulary)
   or, with ``--tiny``, :func:`fundusexpert_plugin.testing.tiny_models.make_tiny_model`. The tokenizer is the one
   ``tiny_models`` trains locally, with the real Qwen2.5 special-token ids.
3. ``swift sft`` twice, side by side on the same data, seed and system prompt, full fine-tune:

   * ``plugin``: ``--template fundusexpert_qwen2_5_vl --loss_type fundus_grounding --loss_scale fundus_grounding``;
   * ``stock``:  ``--template qwen2_5_vl`` with ms-swift's default loss (plain token cross-entropy).

   A trainer callback (this file, imported by swift through ``--external_plugins``, registered as
   ``--callbacks gpu_check_timer``) records the wall time and ``state.num_input_tokens_seen``
   (``--include_num_input_tokens_seen``, counted as HF's ``non_padding``: text + image tokens, padding excluded)
   at every optimizer
   step, and the peak memory at the end. ``tokens_per_s`` is measured after the first ``warmup_steps`` steps
   (CUDA graphs/allocator warm-up, first dataloader batches), so model loading and data preparation do not count.
   Peak memory is ``torch.cuda.max_memory_allocated`` (and ``..._reserved``) on a GPU, the process's peak RSS on
   a CPU (``memory_kind`` says which).
4. ``swift infer`` (transformers backend, greedy, batched) on the held-out rows with the ``plugin`` checkpoint;
   throughput is ms-swift's own ``InferStats`` line (generated tokens / generation time, model loading
   excluded). With random weights the model rarely stops early, so most rows generate ``max_new_tokens``.
   ``--with-vllm`` adds the same with ``--infer_backend vllm`` when vLLM is installed (about a minute more).

Output: one JSON (``--out``, default ``benchmarks/results/gpu_check[_tiny].json``) with the keys listed in
:data:`RESULT_KEYS`; ``benchmarks/results/README.md`` describes it. Nothing here tunes or invents numbers: on a
machine without a GPU only ``--tiny`` runs, and its numbers describe the CPU, not a GPU.
"""
from __future__ import annotations

import argparse
import ast
import datetime as _dt
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
CALLBACK_NAME = 'gpu_check_timer'
TIMING_ENV = 'GPU_CHECK_TIMING_FILE'
#: top-level keys of the result JSON (tests/benchmarks/test_gpu_check.py checks them)
RESULT_KEYS = ('schema', 'mode', 'created', 'environment', 'model', 'data', 'sft', 'infer', 'total_wall_s')
#: keys of each ``sft`` arm
SFT_KEYS = ('template', 'loss_type', 'loss_scale', 'steps', 'warmup_steps', 'measured_steps', 'tokens_per_s',
            'samples_per_s', 'peak_memory_gib', 'memory_kind', 'final_loss', 'wall_s')
#: keys of each ``infer`` backend
INFER_KEYS = ('backend', 'num_samples', 'num_generated_tokens', 'runtime_s', 'tokens_per_s', 'samples_per_s',
              'wall_s')

MODES = {
    # steps per arm, warm-up steps left out of the rate, batch, max_length, MAX_PIXELS, infer rows/tokens/batch
    'gpu': dict(steps=20, warmup_steps=5, batch_size=4, max_length=8192, max_pixels=1003520,
                infer_dataset='fundusgen_heldout', max_new_tokens=256, infer_batch=16, dataloader_workers=2),
    'tiny': dict(steps=3, warmup_steps=1, batch_size=2, max_length=2048, max_pixels=50176,
                 infer_dataset='fundusgen_heldout:region_detection#4', max_new_tokens=16, infer_batch=4,
                 dataloader_workers=0),
}


# --------------------------------------------------------------------------------------------- the ~1B model
def one_b_config():
    """A ``Qwen2_5_VLConfig`` of about 1.0 B parameters (random weights; not a released checkpoint).

    Vision: the Qwen2.5-VL ViT (hidden 1280, 16 heads, SwiGLU 3420, patch 14, window 112, merge 2) with
    16 instead of 32 blocks (full attention at blocks 7 and 15). Text: Qwen2.5-1.5B's layer shape (hidden 1536,
    12 query / 2 KV heads, intermediate 8960, mrope [16, 24, 24]) with 10 layers, tied 151,680-row embeddings
    (the ``tiny_models`` id layout: real Qwen2.5 special-token ids). 1.05 B parameters: 0.33 B vision (with the
    merger) + 0.47 B decoder layers + 0.23 B embeddings.
    """
    from transformers import Qwen2_5_VLConfig

    from fundusexpert_plugin.testing.tiny_models import TINY_VOCAB_SIZE
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=TINY_VOCAB_SIZE, hidden_size=1536, intermediate_size=8960, num_hidden_layers=10,
            num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6,
            rope_parameters={'rope_type': 'default', 'rope_theta': 1000000.0, 'mrope_section': [16, 24, 24]},
            bos_token_id=151643, eos_token_id=151645, pad_token_id=151643, tie_word_embeddings=True),
        vision_config=dict(
            depth=16, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=1536, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15]),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=True)
    config.architectures = ['Qwen2_5_VLForConditionalGeneration']
    return config


def count_parameters(config) -> int:
    """Parameters of a ``Qwen2_5_VLForConditionalGeneration`` built from ``config`` (on the meta device)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    with torch.device('meta'):
        model = Qwen2_5_VLForConditionalGeneration(config)
    return sum(p.numel() for p in model.parameters())


def make_one_b_model(out_dir: Path, *, seed: int = 0) -> Path:
    """Write the ~1B random Qwen2.5-VL of :func:`one_b_config` (bf16 safetensors, tokenizer, processor).

    Built on the GPU when there is one (initialising 1 B parameters on a CPU takes minutes).
    """
    import torch
    from transformers import (GenerationConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    from fundusexpert_plugin.testing.tiny_models import QWEN2_5_SPECIAL_TOKENS, QWEN2_5_VL_CHAT_TEMPLATE, build_tokenizer
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(
        QWEN2_5_SPECIAL_TOKENS, unk_token=None, eos_token='<|im_end|>', pad_token='<|endoftext|>',
        model_max_length=32768, chat_template=QWEN2_5_VL_CHAT_TEMPLATE)
    torch.manual_seed(seed)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    dtype = torch.bfloat16 if device == 'cuda' else torch.float32
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(one_b_config(), dtype=dtype).eval()
    # as tiny_models: zero the (tied) embedding rows of ids the tokenizer never produces, so that even the random
    # model generates decodable tokens (their logits are exactly 0)
    weight = model.get_input_embeddings().weight
    unused = torch.ones(weight.shape[0], dtype=torch.bool, device=weight.device)
    unused[torch.tensor(sorted(tokenizer.get_vocab().values()), device=weight.device)] = False
    with torch.no_grad():
        weight[unused] = 0
    model.generation_config = GenerationConfig(
        bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643, do_sample=False)
    model.to(torch.bfloat16).save_pretrained(out_dir, safe_serialization=True)
    del model
    pixels = dict(min_pixels=56 * 56, max_pixels=1280 * 28 * 28, patch_size=14, temporal_patch_size=2, merge_size=2)
    Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**pixels), tokenizer=tokenizer,
                        video_processor=Qwen2VLVideoProcessor(**pixels),
                        chat_template=QWEN2_5_VL_CHAT_TEMPLATE).save_pretrained(out_dir)
    return out_dir


# ------------------------------------------------------------------------ the callback (inside swift sft)
def register_callback() -> None:
    """Add :class:`TimingCallback` to ms-swift's ``callbacks_map`` as ``gpu_check_timer``."""
    from swift.callbacks import TrainerCallback
    from swift.callbacks.mapping import callbacks_map

    class TimingCallback(TrainerCallback):
        """Wall time and input tokens at every optimizer step; peak memory at the end -> ``$GPU_CHECK_TIMING_FILE``."""

        def __init__(self, args, trainer):
            super().__init__(args, trainer)
            self.rows: List[Dict[str, float]] = []
            # HF counts 'non_padding' tokens (attention_mask.sum()), but swift's parser reads this str|bool field
            # as a bool (true -> 'all', padding included); switch the trainer's copy to the non-padding count
            if args.include_num_input_tokens_seen not in ('no', False, None):
                args.include_num_input_tokens_seen = 'non_padding'

        @staticmethod
        def _sync():
            import torch
            if torch.cuda.is_available():
                torch.cuda.synchronize()

        def on_train_begin(self, args, state, control, **kwargs):
            import torch
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            self._sync()
            self.rows.append({'step': 0, 'time': time.perf_counter(), 'tokens': 0})

        def on_step_end(self, args, state, control, **kwargs):
            self._sync()
            self.rows.append({'step': state.global_step, 'time': time.perf_counter(),
                              'tokens': int(getattr(state, 'num_input_tokens_seen', 0) or 0)})

        def on_train_end(self, args, state, control, **kwargs):
            import resource

            import torch
            if torch.cuda.is_available():
                memory = {'memory_kind': 'cuda_max_memory_allocated',
                          'peak_memory_bytes': torch.cuda.max_memory_allocated(),
                          'peak_reserved_bytes': torch.cuda.max_memory_reserved()}
            else:  # ru_maxrss is in KiB on Linux
                memory = {'memory_kind': 'cpu_peak_rss',
                          'peak_memory_bytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
            losses = [e['loss'] for e in state.log_history if 'loss' in e]
            path = os.environ.get(TIMING_ENV)
            if path and args.process_index == 0:
                Path(path).write_text(json.dumps({'rows': self.rows, 'final_loss': losses[-1] if losses else None,
                                                  **memory}, indent=1))

    callbacks_map[CALLBACK_NAME] = TimingCallback


# ---------------------------------------------------------------------------------------------- the runs
def _swift() -> str:
    candidate = Path(sys.executable).parent / 'swift'
    return str(candidate) if candidate.exists() else (shutil.which('swift') or 'swift')


def _run(cmd: List[str], log: Path, env: Dict[str, str]) -> float:
    """Run a command with its output in ``log``; returns the wall seconds. Raises RuntimeError on failure."""
    start = time.perf_counter()
    with log.open('w') as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = '\n'.join(log.read_text(errors='replace').splitlines()[-40:])
        raise RuntimeError(f'{" ".join(cmd[:2])} failed (exit {proc.returncode}); log {log}:\n{tail}')
    return time.perf_counter() - start


def sft_arm(arm: str, *, model_dir: Path, work: Path, cfg: dict, env: Dict[str, str], plugin: str,
            dtype: str, attn_impl: Optional[str], save: bool) -> dict:
    """One ``swift sft`` run (``arm`` is ``'plugin'`` or ``'stock'``) and its measurements."""
    from fundusexpert_plugin.swift_plugin.system_prompt import DEFAULT_SYSTEM
    template = {'plugin': 'fundusexpert_qwen2_5_vl', 'stock': 'qwen2_5_vl'}[arm]
    loss = ['--loss_type', 'fundus_grounding', '--loss_scale', 'fundus_grounding'] if arm == 'plugin' else []
    out = work / f'sft_{arm}'
    shutil.rmtree(out, ignore_errors=True)
    timing = work / f'timing_{arm}.json'
    steps = cfg['steps']
    cmd = [_swift(), 'sft', '--model', str(model_dir), '--template', template, '--system', DEFAULT_SYSTEM,
           '--external_plugins', plugin, str(Path(__file__).resolve()), '--callbacks', CALLBACK_NAME,
           '--dataset', 'fundusgen', *loss,
           '--tuner_type', 'full', '--freeze_vit', 'false', '--freeze_aligner', 'false', '--torch_dtype', dtype,
           '--max_steps', str(steps), '--num_train_epochs', '1000', '--per_device_train_batch_size',
           str(cfg['batch_size']), '--gradient_accumulation_steps', '1', '--learning_rate', '1e-5',
           '--max_length', str(cfg['max_length']), '--gradient_checkpointing', 'true',
           '--include_num_input_tokens_seen', 'true', '--logging_steps', '1',
           '--save_strategy', 'steps' if save else 'no', '--save_steps', str(steps), '--save_only_model', 'true',
           '--save_total_limit', '1', '--add_version', 'false', '--split_dataset_ratio', '0', '--eval_strategy', 'no',
           '--dataloader_num_workers', str(cfg['dataloader_workers']), '--check_model', 'false', '--report_to', 'none',
           '--seed', '0', '--data_seed', '0', '--output_dir', str(out)]
    if attn_impl:
        cmd += ['--attn_impl', attn_impl]
    wall = _run(cmd, work / f'sft_{arm}.log', {**env, TIMING_ENV: str(timing)})
    data = json.loads(timing.read_text())
    rows = [r for r in data['rows'] if r['step'] > 0]
    first = ([r for r in data['rows'] if r['step'] == cfg['warmup_steps']] or data['rows'][:1])[0]
    last = rows[-1]
    seconds = last['time'] - first['time']
    measured = last['step'] - first['step']
    return {
        'template': template, 'loss_type': 'fundus_grounding' if loss else 'cross_entropy (swift default)',
        'loss_scale': 'fundus_grounding' if loss else 'default', 'steps': last['step'],
        'warmup_steps': first['step'], 'measured_steps': measured,
        'tokens_per_s': (last['tokens'] - first['tokens']) / seconds if seconds > 0 else None,
        'samples_per_s': measured * cfg['batch_size'] / seconds if seconds > 0 else None,
        'peak_memory_gib': data['peak_memory_bytes'] / 2**30, 'memory_kind': data['memory_kind'],
        **({'peak_reserved_gib': data['peak_reserved_bytes'] / 2**30} if 'peak_reserved_bytes' in data else {}),
        'final_loss': data['final_loss'], 'wall_s': wall, 'output_dir': str(out),
    }


_INFER_STATS = re.compile(r"\{'num_prompt_tokens'.*\}")


def infer_run(backend: str, *, checkpoint: Path, work: Path, cfg: dict, env: Dict[str, str], dtype: str) -> dict:
    """``swift infer`` on the held-out rows; throughput from ms-swift's own ``InferStats`` line."""
    result = work / f'infer_{backend}.jsonl'
    result.unlink(missing_ok=True)
    cmd = [_swift(), 'infer', '--model', str(checkpoint), '--val_dataset', cfg['infer_dataset'],
           '--infer_backend', backend, '--torch_dtype', dtype, '--temperature', '0',
           '--max_new_tokens', str(cfg['max_new_tokens']), '--result_path', str(result)]
    cmd += ['--max_batch_size', str(cfg['infer_batch'])] if backend == 'transformers' else \
        ['--vllm_max_model_len', str(cfg['max_length']), '--vllm_gpu_memory_utilization', '0.8']
    log = work / f'infer_{backend}.log'
    wall = _run(cmd, log, env)
    matches = _INFER_STATS.findall(log.read_text(errors='replace'))
    if not matches:
        raise RuntimeError(f'{log}: no InferStats line ({{\'num_prompt_tokens\': ...}}) from swift infer')
    stats = ast.literal_eval(matches[-1])
    return {'backend': backend, 'num_samples': stats['num_samples'],
            'num_generated_tokens': stats['num_generated_tokens'], 'num_prompt_tokens': stats['num_prompt_tokens'],
            'runtime_s': stats['runtime'], 'tokens_per_s': stats['tokens/s'], 'samples_per_s': stats['samples/s'],
            'max_new_tokens': cfg['max_new_tokens'], 'wall_s': wall, 'result_path': str(result)}


def environment() -> dict:
    """Versions and the device, for the JSON."""
    import importlib.metadata as md

    import torch
    versions = {}
    for dist in ('torch', 'transformers', 'ms-swift', 'peft', 'deepspeed', 'flash-attn', 'vllm', 'fundusexpert-plugin'):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    cuda = torch.cuda.is_available()
    return {'host': socket.gethostname(), 'platform': platform.platform(), 'python': platform.python_version(),
            'cuda_available': cuda, 'device': torch.cuda.get_device_name(0) if cuda else platform.processor() or 'cpu',
            'device_count': torch.cuda.device_count() if cuda else 0, 'cuda_version': torch.version.cuda,
            'cpu_count': os.cpu_count(), 'versions': versions}


def run_check(mode: str, work: Path, out: Path, *, with_vllm: bool = False) -> dict:
    """Run the whole check and write the JSON; returns the result dict.

    Raises:
        RuntimeError: no GPU in ``'gpu'`` mode (use ``--tiny``), or a swift command failed (log tail included).
    """
    import torch

    from fundusexpert_plugin.build import build_sample
    from fundusexpert_plugin.swift_plugin.registry import plugin_path
    from fundusexpert_plugin.testing.tiny_models import make_tiny_model
    t0 = time.perf_counter()
    cfg = MODES[mode]
    cuda = torch.cuda.is_available()
    if mode == 'gpu' and not cuda:
        raise RuntimeError('gpu_check: no CUDA device visible; on a CPU machine run '
                           '`bash benchmarks/gpu_check.sh --tiny`')
    work.mkdir(parents=True, exist_ok=True)
    summaries = build_sample(work / 'fundusgen')
    model_dir = work / f'model_{mode}'
    if not (model_dir / 'config.json').exists():
        (make_tiny_model('qwen2_5_vl', model_dir) if mode == 'tiny' else make_one_b_model(model_dir))
    from transformers import AutoConfig
    config = AutoConfig.from_pretrained(model_dir)
    params = count_parameters(config)
    dtype = 'bfloat16' if cuda else 'float32'
    attn_impl = None
    if cuda:
        try:
            import flash_attn  # noqa: F401
            attn_impl = 'flash_attn'
        except ImportError:
            attn_impl = 'sdpa'
    env = dict(os.environ)
    env.update({'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1',
                'MODELSCOPE_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false', 'MAX_PIXELS': str(cfg['max_pixels']),
                'FUNDUSGEN_DIR': str(work / 'fundusgen' / 'train'),
                'FUNDUSGEN_HELDOUT_DIR': str(work / 'fundusgen' / 'heldout'),
                'FUNDUSEXPERT_CACHE': str(work / 'cache')})
    sft = {}
    for arm in ('plugin', 'stock'):
        sft[arm] = sft_arm(arm, model_dir=model_dir, work=work, cfg=cfg, env=env, plugin=plugin_path(), dtype=dtype,
                           attn_impl=attn_impl, save=arm == 'plugin')
    plugin, stock = sft['plugin'], sft['stock']
    sft['plugin_over_stock'] = {
        'tokens_per_s': plugin['tokens_per_s'] / stock['tokens_per_s'],
        'peak_memory': plugin['peak_memory_gib'] / stock['peak_memory_gib']}
    checkpoint = max((Path(plugin['output_dir'])).glob('checkpoint-*'), key=lambda p: p.stat().st_mtime)
    infer = {'transformers': infer_run('transformers', checkpoint=checkpoint, work=work, cfg=cfg, env=env, dtype=dtype)}
    if with_vllm:
        try:
            import vllm  # noqa: F401
            infer['vllm'] = infer_run('vllm', checkpoint=checkpoint, work=work, cfg=cfg, env=env, dtype=dtype)
        except ImportError:
            infer['vllm'] = {'skipped': 'vllm is not installed'}
    result = {
        'schema': 'fundusexpert-gpu-check/1', 'mode': mode,
        'created': _dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds'),
        'environment': environment(),
        'model': {'family': 'qwen2_5_vl', 'weights': 'random (built from a config, no download)',
                  'parameters': params, 'dtype': dtype, 'attn_impl': attn_impl or 'swift default',
                  'text': {k: getattr(config.text_config, k) for k in ('hidden_size', 'num_hidden_layers',
                                                                       'intermediate_size', 'vocab_size')},
                  'vision': {k: getattr(config.vision_config, k) for k in ('depth', 'hidden_size')}},
        'data': {'dataset': 'fundusgen (bundled sample)', 'train_rows': sum(summaries['train'].rows_per_task.values()),
                 'heldout_rows': sum(summaries['heldout'].rows_per_task.values()),
                 'infer_dataset': cfg['infer_dataset'], 'max_pixels': cfg['max_pixels'],
                 'per_device_train_batch_size': cfg['batch_size'], 'max_length': cfg['max_length']},
        'sft': sft, 'infer': infer, 'total_wall_s': time.perf_counter() - t0,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + '\n')
    return result


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry (see the module docstring); prints the JSON path and a one-line summary."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tiny', action='store_true', help='CPU smoke run with the tiny model (< 3 min)')
    parser.add_argument('--out', type=Path, default=None,
                        help='result JSON (default benchmarks/results/gpu_check.json, or gpu_check_tiny.json)')
    parser.add_argument('--work-dir', type=Path, default=None, help='scratch folder (default: a temporary one)')
    parser.add_argument('--keep', action='store_true', help='keep the scratch folder (model, checkpoints, logs)')
    parser.add_argument('--with-vllm', action='store_true', help='also time swift infer --infer_backend vllm')
    args = parser.parse_args(argv)
    mode = 'tiny' if args.tiny else 'gpu'
    out = args.out or REPO / 'benchmarks' / 'results' / ('gpu_check_tiny.json' if args.tiny else 'gpu_check.json')
    work = args.work_dir or Path(tempfile.mkdtemp(prefix='fundus_gpu_check_'))
    try:
        result = run_check(mode, work, out, with_vllm=args.with_vllm)
    finally:
        if args.work_dir is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    p, s, i = result['sft']['plugin'], result['sft']['stock'], result['infer']['transformers']
    print(f"{out}\n{mode}: {result['model']['parameters'] / 1e9:.2f} B params | sft tokens/s plugin "
          f"{p['tokens_per_s']:.0f} vs stock {s['tokens_per_s']:.0f} | peak {p['memory_kind']} "
          f"{p['peak_memory_gib']:.2f} vs {s['peak_memory_gib']:.2f} GiB | infer {i['tokens_per_s']:.1f} tokens/s | "
          f"{result['total_wall_s']:.0f} s total")
    return 0


if __name__ == '__main__':
    sys.exit(main())
elif 'swift' in sys.modules:  # imported by swift through --external_plugins: provide the timing callback
    register_callback()
