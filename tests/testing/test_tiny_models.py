"""Tests of fundusexpert_plugin.testing.tiny_models: offline tiny Qwen2.5-VL / InternVL checkpoints.

Fast tests build each family once per module and load it through ms-swift's own API; the two
``slow`` tests run the real ``swift sft`` then ``swift infer`` CLI on the built directory (about
30 s each on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fundusexpert_plugin.testing import tiny_models
from fundusexpert_plugin.testing.tiny_models import make_tiny_model

TEMPLATE = {'qwen2_5_vl': 'qwen2_5_vl', 'internvl': 'internvl_hf'}

QWEN_IDS = {
    '<|endoftext|>': 151643, '<|im_start|>': 151644, '<|im_end|>': 151645,
    '<|object_ref_start|>': 151646, '<|object_ref_end|>': 151647, '<|box_start|>': 151648,
    '<|box_end|>': 151649, '<|quad_start|>': 151650, '<|quad_end|>': 151651,
    '<|vision_start|>': 151652, '<|vision_end|>': 151653, '<|vision_pad|>': 151654,
    '<|image_pad|>': 151655, '<|video_pad|>': 151656, '<tool_call>': 151657, '</tool_call>': 151658,
    '<|fim_prefix|>': 151659, '<|fim_middle|>': 151660, '<|fim_suffix|>': 151661,
    '<|fim_pad|>': 151662, '<|repo_name|>': 151663, '<|file_sep|>': 151664,
}
INTERNVL_IDS = {
    **QWEN_IDS,
    '<img>': 151665, '</img>': 151666, '<IMG_CONTEXT>': 151667, '<quad>': 151668, '</quad>': 151669,
    '<ref>': 151670, '</ref>': 151671, '<box>': 151672, '</box>': 151673, '<video>': 151674,
}
EXPECTED_IDS = {'qwen2_5_vl': QWEN_IDS, 'internvl': INTERNVL_IDS}
GROUNDING_TEXT = {
    'qwen2_5_vl': '<|object_ref_start|>optic disc<|object_ref_end|><|box_start|>(20,30),(60,80)<|box_end|>',
    'internvl': '<ref>optic disc</ref><box>[[62, 167, 375, 667]]</box>',
}
ROW_MESSAGES = [{'role': 'user', 'content': '<image>Where is the optic disc?'},
                {'role': 'assistant', 'content': 'It is on the left.'}]
OFFLINE_ENV = {'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}


@pytest.fixture(scope='module', params=sorted(TEMPLATE))
def built(request, tmp_path_factory):
    """(family, model_dir) for each family, built once per module."""
    family = request.param
    return family, make_tiny_model(family, tmp_path_factory.mktemp(family) / 'model')


def _tokenizer(model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(model_dir)


def test_make_tiny_model_writes_a_loadable_checkpoint(built):
    family, model_dir = built
    names = {p.name for p in model_dir.iterdir()}
    assert {'config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json',
            'processor_config.json', 'generation_config.json'} <= names
    config = json.loads((model_dir / 'config.json').read_text())
    arch = {'qwen2_5_vl': 'Qwen2_5_VLForConditionalGeneration', 'internvl': 'InternVLForConditionalGeneration'}
    assert config['architectures'] == [arch[family]]
    assert config['text_config']['vocab_size'] > max(EXPECTED_IDS[family].values())
    assert (model_dir / 'model.safetensors').stat().st_size < 60 * 2**20


def test_internvl_config_has_16_image_tokens_per_112px_tile(tmp_path):
    config = json.loads((make_tiny_model('internvl', tmp_path) / 'config.json').read_text())
    # 112 px / patch 14 = 8x8 patches; pixel shuffle 0.5 -> 4x4.
    assert config['image_seq_length'] == 16
    assert config['image_token_id'] == 151667
    assert config['vision_config']['image_size'] == [112, 112]


def test_special_tokens_have_the_real_checkpoint_ids(built):
    family, model_dir = built
    tokenizer = _tokenizer(model_dir)
    got = {token: tokenizer.convert_tokens_to_ids(token) for token in EXPECTED_IDS[family]}
    assert got == EXPECTED_IDS[family]
    for token, token_id in EXPECTED_IDS[family].items():
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id]


def test_grounding_text_round_trips_through_the_tokenizer(built):
    family, model_dir = built
    tokenizer = _tokenizer(model_dir)
    text = GROUNDING_TEXT[family]
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert max(ids) < json.loads((model_dir / 'config.json').read_text())['text_config']['vocab_size']


@pytest.mark.parametrize('text', ['视盘 硬性渗出 出血 微血管瘤', 'hard exudates, haemorrhages, microaneurysms',
                                  '[[0, 999, 1000, 12]] (448,336)'])
def test_ophthalmic_text_round_trips_and_digits_are_single_tokens(built, text):
    _, model_dir = built
    tokenizer = _tokenizer(model_dir)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    digit_ids = tokenizer.encode('1000', add_special_tokens=False)
    assert len(digit_ids) == 4 and tokenizer.decode(digit_ids[:1]) == '1'


def test_internvl_processor_names_its_image_tokens(tmp_path):
    from transformers import AutoProcessor
    processor = AutoProcessor.from_pretrained(make_tiny_model('internvl', tmp_path))
    assert type(processor).__name__ == 'InternVLProcessor'
    assert (processor.start_image_token, processor.end_image_token, processor.image_token) == (
        '<img>', '</img>', '<IMG_CONTEXT>')
    assert (processor.start_image_token_id, processor.end_image_token_id, processor.image_token_id) == (
        151665, 151666, 151667)
    assert processor.image_processor.max_patches == 2


def test_same_seed_gives_identical_files_and_another_seed_other_weights(tmp_path):
    a = make_tiny_model('internvl', tmp_path / 'a', seed=3)
    b = make_tiny_model('internvl', tmp_path / 'b', seed=3)
    c = make_tiny_model('internvl', tmp_path / 'c', seed=4)
    for name in ('model.safetensors', 'tokenizer.json', 'config.json', 'processor_config.json'):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / 'model.safetensors').read_bytes() != (c / 'model.safetensors').read_bytes()
    assert (a / 'tokenizer.json').read_bytes() == (c / 'tokenizer.json').read_bytes()


def test_unknown_family_raises_value_error_naming_the_allowed_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown family 'llava'; allowed: qwen2_5_vl, internvl"):
        make_tiny_model('llava', tmp_path)
    assert not any(tmp_path.iterdir())


def test_module_has_no_download_code_path():
    source = inspect.getsource(tiny_models)
    for call in ('from_pretrained(', 'snapshot_download', 'hf_hub_download', 'safe_snapshot_download'):
        assert call not in source


def test_cli_run_builds_the_family_into_out_dir(tmp_path, capsys):
    from fundusexpert_plugin.cli import tiny_model
    parser = argparse.ArgumentParser()
    tiny_model.add_arguments(parser)
    args = parser.parse_args(['--family', 'internvl', str(tmp_path / 'cli')])
    assert tiny_model.run(args) == 0
    assert (tmp_path / 'cli' / 'model.safetensors').exists()
    assert capsys.readouterr().out.strip() == str(tmp_path / 'cli')
    with pytest.raises(SystemExit):
        parser.parse_args(['--family', 'llava', str(tmp_path)])


def test_swift_loads_encodes_and_gets_a_finite_loss(built):
    import torch
    from PIL import Image
    from swift import get_model_processor, get_template

    family, model_dir = built
    model, processor = get_model_processor(
        str(model_dir), torch_dtype=torch.float32, device_map='cpu', download_model=False)
    template = get_template(processor, template_type=TEMPLATE[family])
    template.set_mode('train')
    row = {'messages': ROW_MESSAGES, 'images': [Image.new('RGB', (112, 112), (150, 60, 30))]}
    encoded = template.encode(row)
    image_token = {'qwen2_5_vl': 151655, 'internvl': 151667}[family]
    assert encoded['input_ids'].count(image_token) == 16  # 112x112 image -> 16 visual tokens
    batch = template.data_collator([encoded])
    with torch.no_grad():
        loss = model(**batch).loss
    assert math.isfinite(loss.item())


def test_untrained_model_generates_tokens_the_tokenizer_knows(tmp_path):
    import torch
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    model_dir = make_tiny_model('qwen2_5_vl', tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir)
    prompt = tokenizer('<|im_start|>user\nWhere is the fovea?<|im_end|>\n<|im_start|>assistant\n',
                       return_tensors='pt')
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    known = set(tokenizer.get_vocab().values())
    assert set(out[0, prompt['input_ids'].shape[1]:].tolist()) <= known


VISION_IDS = {'qwen2_5_vl': [151652, 151653, 151654, 151655, 151656],
              'internvl': [151652, 151653, 151654, 151655, 151656, 151665, 151666, 151667, 151674]}


def test_generation_never_samples_a_vision_placeholder(built):
    """A sampled <|image_pad|> / <IMG_CONTEXT> breaks GRPO's log-prob pass: suppress_tokens keeps them out."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer, GenerationConfig

    family, model_dir = built
    saved = json.loads((model_dir / 'generation_config.json').read_text())
    assert saved['suppress_tokens'] == VISION_IDS[family]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    prompt = tokenizer('<|im_start|>user\nWhere is the fovea?<|im_end|>\n<|im_start|>assistant\n', return_tensors='pt')
    image_id = VISION_IDS[family][3]
    with torch.no_grad():
        first = model(**prompt).logits[0, -1].argmax().item()
        # make the image placeholder the sure winner: its output row = 100 x the row of the greedy token
        weight = model.get_output_embeddings().weight
        weight[image_id] = 100 * weight[first]
        model.generation_config.suppress_tokens = None
        unsuppressed = model.generate(**prompt, max_new_tokens=4)
        model.generation_config = GenerationConfig.from_pretrained(model_dir)   # generation_config.json again
        suppressed = model.generate(**prompt, max_new_tokens=4)
    n = prompt['input_ids'].shape[1]
    assert unsuppressed[0, n].item() == image_id     # the check can fail
    assert not set(suppressed[0, n:].tolist()) & set(VISION_IDS[family])


# --------------------------------------------------------------------------------------------------
# slow: the real swift CLI, offline


def _write_dataset(tmp_path: Path) -> Path:
    from PIL import Image
    image = tmp_path / 'fundus.png'
    Image.new('RGB', (112, 112), (150, 60, 30)).save(image)
    rows = [{'messages': [ROW_MESSAGES[0], {'role': 'assistant', 'content': f'It is on the left ({i}).'}],
             'images': [str(image)]} for i in range(4)]
    path = tmp_path / 'data.jsonl'
    path.write_text(''.join(json.dumps(row) + '\n' for row in rows))
    return path


def _swift(*argv: str, cwd: Path) -> None:
    swift = Path(sys.executable).parent / 'swift'
    proc = subprocess.run([str(swift), *argv], cwd=cwd, env={**os.environ, **OFFLINE_ENV},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f'swift {argv[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'


@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(TEMPLATE))
def test_swift_sft_then_infer_on_the_tiny_model(family, tmp_path):
    model_dir = make_tiny_model(family, tmp_path / 'model')
    data = _write_dataset(tmp_path)
    out = tmp_path / 'sft'
    _swift('sft', '--model', str(model_dir), '--template', TEMPLATE[family], '--dataset', str(data),
           '--tuner_type', 'full', '--max_steps', '2', '--torch_dtype', 'float32', '--check_model', 'false',
           '--output_dir', str(out), '--add_version', 'false', '--report_to', 'none',
           '--per_device_train_batch_size', '1', '--save_steps', '2', '--save_only_model', 'true',
           '--dataloader_num_workers', '0', '--split_dataset_ratio', '0', '--max_pixels', '12544',
           cwd=tmp_path)
    checkpoint = out / 'checkpoint-2'
    assert (checkpoint / 'model.safetensors').exists()
    result = tmp_path / 'infer.jsonl'
    _swift('infer', '--model', str(checkpoint), '--val_dataset', str(data), '--result_path', str(result),
           '--max_new_tokens', '8', '--infer_backend', 'transformers', '--max_pixels', '12544', cwd=tmp_path)
    lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
    assert len(lines) == 4
    assert all(isinstance(line['response'], str) for line in lines)
    assert [line['labels'] for line in lines] == [f'It is on the left ({i}).' for i in range(4)]
