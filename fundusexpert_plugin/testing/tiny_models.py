"""Tiny, randomly initialised multimodal models for offline CPU tests of the ms-swift path.

``make_tiny_model(family, out_dir)`` writes a directory that ``swift sft --model out_dir`` and
``swift infer --model out_dir`` load like a hub checkpoint: ``config.json``, ``model.safetensors``,
``generation_config.json``, the tokenizer files, the image/video processor configs and the chat
template. Nothing is downloaded: the model is built from a config and the tokenizer is a byte-level
BPE trained here on a small built-in English/Chinese ophthalmic corpus. The weights are random, so
the models only exercise shapes, templates, collators, losses and the CLI; their output is noise.

Families (the model type swift auto-detects from ``architectures``; pass the template explicitly):

=============  ======================================  ===================  ===============
family         architecture                            swift model type     ``--template``
=============  ======================================  ===================  ===============
``qwen2_5_vl`` ``Qwen2_5_VLForConditionalGeneration``  ``qwen2_5_vl``       ``qwen2_5_vl``
``internvl``   ``InternVLForConditionalGeneration``    ``internvl``         ``internvl_hf``
=============  ======================================  ===================  ===============

Token ids: the real checkpoints' special tokens keep their real ids (ms-swift hard-codes
``<|image_pad|>`` = 151655 and ``<|video_pad|>`` = 151656 in ``Qwen2VLTemplate``), while the
trained BPE vocabulary occupies ids ``0 .. n-1`` with ``n`` = 913 (256 bytes + merges). The ids
between ``n`` and 151642 (and above the last special id) are unused: the embedding matrix has rows
for them, but the tokenizer never produces them and they would decode to ''. Their (tied) embedding
rows are zero, so their logits are 0 and even the untrained model generates known tokens.
``len(tokenizer)`` is therefore much smaller than ``config.text_config.vocab_size``; do not resize
the embeddings to it.

Source of the ids:
    * Qwen2.5 / Qwen2.5-VL: ``added_tokens_decoder`` of the Qwen2.5-VL ``tokenizer_config.json``
      (151643 ``<|endoftext|>`` .. 151664 ``<|file_sep|>``); ids 151657-151664 are ``special:
      false`` there and here. The same ids are the defaults of transformers'
      ``Qwen2_5_VLConfig`` (image 151655, video 151656, vision start/end 151652/151653).
    * InternVL3-*-hf (Qwen2.5-based): transformers' ``convert_internvl_weights_to_hf.py`` loads
      the Qwen2.5-VL tokenizer and appends ``<img> </img> <IMG_CONTEXT> <quad> </quad> <ref>
      </ref> <box> </box>`` in that order, i.e. 151665-151673; the same script sets
      ``image_token_id = 151667`` (``<IMG_CONTEXT>``). The HF checkpoints name ``<video>`` only as
      the processor's ``video_token`` and have no id for it (their tokenizer length is 151674);
      here ``<video>`` is added at **151674 (ours, not in the checkpoints)** so that the
      ``extra_special_tokens`` entry resolves to an id instead of landing in the gap.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple, Union

FAMILIES = ('qwen2_5_vl', 'internvl')

# (id, content, special) exactly as in the Qwen2.5-VL tokenizer_config.json added_tokens_decoder.
QWEN2_5_SPECIAL_TOKENS: Tuple[Tuple[int, str, bool], ...] = (
    (151643, '<|endoftext|>', True),
    (151644, '<|im_start|>', True),
    (151645, '<|im_end|>', True),
    (151646, '<|object_ref_start|>', True),
    (151647, '<|object_ref_end|>', True),
    (151648, '<|box_start|>', True),
    (151649, '<|box_end|>', True),
    (151650, '<|quad_start|>', True),
    (151651, '<|quad_end|>', True),
    (151652, '<|vision_start|>', True),
    (151653, '<|vision_end|>', True),
    (151654, '<|vision_pad|>', True),
    (151655, '<|image_pad|>', True),
    (151656, '<|video_pad|>', True),
    (151657, '<tool_call>', False),
    (151658, '</tool_call>', False),
    (151659, '<|fim_prefix|>', False),
    (151660, '<|fim_middle|>', False),
    (151661, '<|fim_suffix|>', False),
    (151662, '<|fim_pad|>', False),
    (151663, '<|repo_name|>', False),
    (151664, '<|file_sep|>', False),
)

# InternVL3-*-hf appends these to the Qwen2.5 tokens (151665-151673); 151674 <video> is ours.
INTERNVL_EXTRA_TOKENS: Tuple[Tuple[int, str, bool], ...] = (
    (151665, '<img>', True),
    (151666, '</img>', True),
    (151667, '<IMG_CONTEXT>', True),
    (151668, '<quad>', True),
    (151669, '</quad>', True),
    (151670, '<ref>', True),
    (151671, '</ref>', True),
    (151672, '<box>', True),
    (151673, '</box>', True),
    (151674, '<video>', True),
)

# InternVL2.5-1B (remote-code ``internvl_chat``; the paper's mini base) uses the plain Qwen2.5 tokenizer
# with InternVL's tokens appended in this order (its tokenizer_config.json added_tokens_decoder,
# 151665-151673); it has no <video> token.
INTERNVL2_5_TOKENS: Tuple[Tuple[int, str, bool], ...] = INTERNVL_EXTRA_TOKENS[:9]
# Vision placeholders the untrained models must never generate: a sampled <|image_pad|> in a GRPO
# completion is re-encoded as an image slot with no image behind it, and the log-prob pass fails
# ("Number of elements of source < number of ones in mask"). Written as ``suppress_tokens``.
QWEN2_5_VISION_TOKEN_IDS: Tuple[int, ...] = (151652, 151653, 151654, 151655, 151656)  # vision start..video_pad
INTERNVL_VISION_TOKEN_IDS: Tuple[int, ...] = (151665, 151666, 151667, 151674)  # <img> </img> <IMG_CONTEXT> <video>

# Named tokens InternVLProcessor reads from the tokenizer (``tokenizer.start_image_token`` ...).
INTERNVL_NAMED_TOKENS: Dict[str, str] = {
    'start_image_token': '<img>',
    'end_image_token': '</img>',
    'context_image_token': '<IMG_CONTEXT>',
    'video_token': '<video>',
}

# Text vocabulary size of both tiny models: the highest special id rounded up to a multiple of 64.
TINY_VOCAB_SIZE = 151680
# Upper bound for the trained BPE vocabulary; the corpus runs out of pairs seen twice at 913 tokens.
BPE_VOCAB_SIZE = 2000

# Chat template of Qwen2-VL / Qwen2.5-VL-*-Instruct (chat_template.json of the hub checkpoints).
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

# Chat template of the InternVL3-*-hf checkpoints (``chat_template`` in transformers'
# convert_internvl_weights_to_hf.py).
INTERNVL_HF_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "{{ '<IMG_CONTEXT>\n' }}{% elif content['type'] == 'video' %}{{ '<video>\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{'<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}"
    "{% endif %}")

# Tokenizer training text (not display names: those live in vocab.py). English and Chinese fundus
# findings, chat boilerplate, and the coordinate spellings both templates emit.
_CORPUS_SENTENCES = (
    'You are a helpful assistant.',
    'You are an ophthalmology assistant that reads colour fundus photographs.',
    'Where is the optic disc? It is on the left.',
    'Where is the fovea? It is in the centre of the macula.',
    'Describe the fundus image. The optic disc is well defined with a healthy neuroretinal rim.',
    'The optic cup is enlarged; the vertical cup-to-disc ratio is 0.7.',
    'Hard exudates are scattered around the fovea, within one disc diameter.',
    'Haemorrhages (hemorrhages) and microaneurysms are seen in all four quadrants.',
    'Cotton-wool spots lie along the superior temporal arcade.',
    'Drusen are present at the macula.',
    'Findings are consistent with moderate non-proliferative diabetic retinopathy (NPDR).',
    'Proliferative diabetic retinopathy (PDR) with neovascularisation of the disc.',
    'Diabetic macular oedema (DME) risk grade 2.',
    'Grade 0: no apparent retinopathy. Grade 4: proliferative retinopathy.',
    'The image quality is good; the left eye (OS) and the right eye (OD) are both gradable.',
    'Please locate the lesions and give the bounding boxes.',
    'optic disc, optic cup, macula, fovea, hard exudates, haemorrhages, microaneurysms, '
    'cotton-wool spots, soft exudates, drusen, nasal, temporal, superior, inferior.',
    '眼底彩照显示视盘边界清晰，视杯扩大，杯盘比约为0.6。',
    '黄斑区可见硬性渗出，黄斑中心凹反光消失。',
    '视网膜可见散在出血和微血管瘤，并可见棉絮斑。',
    '诊断：中度非增殖性糖尿病视网膜病变，建议随访。',
    '请定位视盘、视杯、黄斑、黄斑中心凹、硬性渗出、出血、微血管瘤和棉絮斑的位置。',
    '左眼，右眼，鼻侧，颞侧，上方，下方，视盘直径。',
    '<ref>optic disc</ref><box>[[62, 167, 375, 667]]</box>',
    '<ref>hard exudates</ref><box>[[120, 340, 180, 410], [500, 512, 999, 1000]]</box>',
    '<|object_ref_start|>optic disc<|object_ref_end|><|box_start|>(20,30),(60,80)<|box_end|>',
    '<|object_ref_start|>fovea<|object_ref_end|><|box_start|>(448,336),(512,400)<|box_end|>',
    '{"bbox_2d": [20, 30, 60, 80], "label": "optic disc"}',
    '[(10,20),(60,80)] [[0, 0, 999, 999]] {1: 2} <think>\n...\n</think>\n',
)


def _corpus() -> List[str]:
    """The fixed training text: the sentences above plus every integer 0-1000 in box spellings."""
    lines = list(_CORPUS_SENTENCES) * 4
    numbers = [str(i) for i in range(1001)]
    for start in range(0, len(numbers), 8):
        chunk = numbers[start:start + 8]
        lines.append(', '.join(chunk))
        lines.append('[[' + ', '.join(chunk[:4]) + ']]')
        lines.append('(' + ','.join(chunk[:2]) + '),(' + ','.join(chunk[2:4]) + ')')
    return lines


def _train_bpe_vocab() -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """Train the byte-level BPE (Qwen2 pre-tokenizer: digits split one by one) on :func:`_corpus`.

    Returns:
        ``(vocab, merges)``: token -> id with ids ``0 .. n-1``, and the merge list in rank order.
        The result depends only on the corpus, so it is the same on every call.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior='isolated', invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    model = json.loads(tok.to_str())['model']
    merges = [tuple(m.split(' ', 1)) if isinstance(m, str) else tuple(m) for m in model['merges']]
    return dict(model['vocab']), merges


def build_tokenizer(specials: Tuple[Tuple[int, str, bool], ...], **kwargs):
    """A ``Qwen2Tokenizer`` (fast) with the trained BPE and ``specials`` pinned to their ids.

    Args:
        specials: ``(id, content, special)`` triples; each id must be >= the BPE vocabulary size.
        **kwargs: passed to ``Qwen2Tokenizer`` (eos/pad tokens, ``extra_special_tokens`` ...).

    Returns:
        transformers.Qwen2Tokenizer: tokenizer whose ``convert_tokens_to_ids`` gives the pinned ids.

    Raises:
        RuntimeError: if a special token did not get its id (a transformers/tokenizers change).
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = _train_bpe_vocab()
    for token_id, content, _ in specials:
        vocab[content] = token_id  # in the model vocab, so the added token reuses this id
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, **kwargs)
    tokenizer.add_tokens([AddedToken(content, special=special, normalized=False)
                          for _, content, special in specials])
    wrong = {c: tokenizer.convert_tokens_to_ids(c) for i, c, _ in specials
             if tokenizer.convert_tokens_to_ids(c) != i}
    if wrong:
        raise RuntimeError(f'tiny tokenizer: special tokens got the wrong ids: {wrong}')
    return tokenizer


def build_internvl2_5_tokenizer():
    """An InternVL2.5-1B-style tokenizer, with no weights: Qwen2 tokenizer + :data:`INTERNVL2_5_TOKENS`.

    The trained tiny BPE replaces Qwen2.5's vocabulary (so ordinary text encodes to other ids than
    the real checkpoint), while every special token keeps its real id: ``<|im_start|>`` 151644,
    ``<|im_end|>`` 151645, ``<img>`` 151665, ``</img>`` 151666, ``<IMG_CONTEXT>`` 151667, ``<quad>``/
    ``</quad>`` 151668/151669, ``<ref>``/``</ref>`` 151670/151671, ``<box>``/``</box>`` 151672/151673.
    Enough for ms-swift's ``internvl2_5`` template to encode rows (text, tiles, ``<IMG_CONTEXT>``
    runs); not a model.
    """
    return build_tokenizer(QWEN2_5_SPECIAL_TOKENS + INTERNVL2_5_TOKENS, unk_token=None, eos_token='<|im_end|>',
                           pad_token='<|endoftext|>', model_max_length=8192)


def _zero_unused_rows(model, tokenizer) -> None:
    """Zero the (tied) embedding rows of every id the tokenizer never produces.

    Those rows then give logits of exactly 0, while the real tokens' random logits have a positive
    maximum, so even the untrained model generates decodable text instead of unused ids that decode
    to ''.
    """
    import torch

    weight = model.get_input_embeddings().weight
    unused = torch.ones(weight.shape[0], dtype=torch.bool)
    unused[list(tokenizer.get_vocab().values())] = False
    with torch.no_grad():
        weight[unused] = 0
        output = model.get_output_embeddings()
        if output is not None and output.weight.data_ptr() != weight.data_ptr():
            output.weight[unused] = 0


def _save_random_model(model_cls, config, tokenizer, out_dir: Path, seed: int,
                       suppress_tokens: Tuple[int, ...] = ()) -> None:
    """Seeded random weights, unused vocabulary rows zeroed, greedy generation config, safetensors.

    ``suppress_tokens`` go into ``generation_config.json``: generation never samples them (their logits
    are set to -inf by transformers' ``SuppressTokensLogitsProcessor``).
    """
    import torch
    from transformers import GenerationConfig
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    _zero_unused_rows(model, tokenizer)
    model.generation_config = GenerationConfig(
        bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643, do_sample=False,
        suppress_tokens=list(suppress_tokens) or None)
    model.save_pretrained(out_dir, safe_serialization=True)


def _qwen2_5_vl(out_dir: Path, seed: int) -> None:
    """Write the tiny Qwen2.5-VL (text 64/2 layers, ViT 32/2 blocks) into ``out_dir``."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    tokenizer = build_tokenizer(
        QWEN2_5_SPECIAL_TOKENS, unk_token=None, eos_token='<|im_end|>', pad_token='<|endoftext|>',
        model_max_length=32768, chat_template=QWEN2_5_VL_CHAT_TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=TINY_VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            rope_parameters={'rope_type': 'default', 'rope_theta': 1000000.0, 'mrope_section': [2, 3, 3]},
            bos_token_id=151643, eos_token_id=151645, pad_token_id=151643, tie_word_embeddings=True),
        # head_dim 16 -> mrope_section sums to 8; one window block then one full-attention block.
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1]),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
        vision_end_token_id=151653, tie_word_embeddings=True)
    config.architectures = ['Qwen2_5_VLForConditionalGeneration']
    _save_random_model(Qwen2_5_VLForConditionalGeneration, config, tokenizer, out_dir, seed,
                       suppress_tokens=QWEN2_5_VISION_TOKEN_IDS)

    # Small pixel bounds for direct HF-processor use; swift resizes with qwen_vl_utils (--max_pixels)
    # and calls the image processor with do_resize=False, so these do not limit swift.
    pixels = dict(min_pixels=56 * 56, max_pixels=448 * 448, patch_size=14, temporal_patch_size=2, merge_size=2)
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels), tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**pixels), chat_template=QWEN2_5_VL_CHAT_TEMPLATE)
    processor.save_pretrained(out_dir)


def _internvl(out_dir: Path, seed: int) -> None:
    """Write the tiny HF-native InternVL (Qwen2 text 64/2 layers, InternViT 32/2 layers, 112 px)."""
    from transformers import (GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration,
                              InternVLProcessor, InternVLVideoProcessor)

    tokenizer = build_tokenizer(
        QWEN2_5_SPECIAL_TOKENS + INTERNVL_EXTRA_TOKENS, unk_token=None, eos_token='<|im_end|>',
        pad_token='<|endoftext|>', model_max_length=8192, extra_special_tokens=dict(INTERNVL_NAMED_TOKENS),
        chat_template=INTERNVL_HF_CHAT_TEMPLATE)
    config = InternVLConfig(
        vision_config=dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            image_size=[112, 112], patch_size=[14, 14], use_absolute_position_embeddings=True),
        text_config=dict(
            model_type='qwen2', vocab_size=TINY_VOCAB_SIZE, hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            bos_token_id=151643, eos_token_id=151645, pad_token_id=151643, tie_word_embeddings=True),
        # 112 px / patch 14 = 8x8 patches; pixel shuffle (downsample 0.5) -> 4x4 = 16 tokens per tile.
        image_token_id=151667, image_seq_length=16, downsample_ratio=0.5, tie_word_embeddings=True)
    config.architectures = ['InternVLForConditionalGeneration']
    _save_random_model(InternVLForConditionalGeneration, config, tokenizer, out_dir, seed,
                       suppress_tokens=QWEN2_5_VISION_TOKEN_IDS + INTERNVL_VISION_TOKEN_IDS)

    image_kwargs = dict(size={'height': 112, 'width': 112}, crop_to_patches=False, min_patches=1,
                        max_patches=2, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(**image_kwargs), tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size={'height': 112, 'width': 112}, num_frames=4,
                                               image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]),
        image_seq_length=16, chat_template=INTERNVL_HF_CHAT_TEMPLATE)
    processor.save_pretrained(out_dir)


_BUILDERS = {'qwen2_5_vl': _qwen2_5_vl, 'internvl': _internvl}


def make_tiny_model(family: str, out_dir: Union[str, Path], *, seed: int = 0) -> Path:
    """Build a tiny random multimodal model from a config and save it as a local checkpoint.

    ``qwen2_5_vl``: ``Qwen2_5_VLForConditionalGeneration``; text decoder hidden 64, 2 layers,
    4 heads / 2 KV heads (head_dim 16, mrope_section [2, 3, 3]), intermediate 128; vision tower
    depth 2, hidden 32, 2 heads, patch 14, spatial merge 2, temporal patch 2, window 112 with block 1
    full attention, ``out_hidden_size`` 64. A 112x112 image gives 8x8 patches = 16 image tokens.
    Special tokens: :data:`QWEN2_5_SPECIAL_TOKENS` (151643-151664). Processor:
    ``Qwen2_5_VLProcessor`` with ``Qwen2VLImageProcessor`` / ``Qwen2VLVideoProcessor`` (min 56*56,
    max 448*448 pixels when used directly; swift resizes itself, so ``--max_pixels`` works).

    ``internvl``: ``InternVLForConditionalGeneration`` (HF-native, swift template ``internvl_hf``);
    InternViT hidden 32, 2 layers, 2 heads, image 112, patch 14; pixel shuffle 0.5 gives
    ``image_seq_length`` 16 tokens per 112 px tile; Qwen2 text decoder hidden 64, 2 layers, 4/2 heads.
    Special tokens: :data:`QWEN2_5_SPECIAL_TOKENS` plus :data:`INTERNVL_EXTRA_TOKENS` (``<img>`` 151665
    .. ``</box>`` 151673, and ``<video>`` 151674, ours); ``image_token_id`` 151667 (``<IMG_CONTEXT>``).
    Processor: ``InternVLProcessor`` with ``GotOcr2ImageProcessor`` (112 px tiles, ``max_patches`` 2).

    Both: text vocabulary 151680 rows with tied input/output embeddings (about 9.7 M parameters,
    ~39 MB in float32, the bulk of the checkpoint); a byte-level BPE of 913 tokens trained on
    a built-in English/Chinese ophthalmic corpus (digits are single tokens, as in Qwen2.5); the chat
    template of the real checkpoint; float32 ``model.safetensors``; greedy ``generation_config`` with
    eos ``<|im_end|>``/``<|endoftext|>`` and the vision placeholders in ``suppress_tokens``
    (:data:`QWEN2_5_VISION_TOKEN_IDS`, plus :data:`INTERNVL_VISION_TOKEN_IDS` for InternVL). Built in
    a few seconds on a CPU, with no network access.

    Args:
        family: ``'qwen2_5_vl'`` or ``'internvl'``.
        out_dir: directory to write; created if missing, files of the same name are overwritten.
        seed: torch seed for the weight initialisation. The same seed gives the same weights; the
            tokenizer does not depend on it.

    Returns:
        Path: ``out_dir``, ready for ``swift sft --model out_dir --template <template>``.

    Raises:
        ValueError: if ``family`` is not one of :data:`FAMILIES`.

    Examples:
        >>> make_tiny_model('internvl', '/tmp/tiny-internvl')  # doctest: +SKIP
        PosixPath('/tmp/tiny-internvl')
    """
    if family not in _BUILDERS:
        raise ValueError(f'make_tiny_model: unknown family {family!r}; allowed: {", ".join(FAMILIES)}')
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _BUILDERS[family](out_dir, seed)
    return out_dir
