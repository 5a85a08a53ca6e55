"""FundusGen rows through ``fundusexpert_internvl2_5`` (the paper's InternVL2.5 base) with a local tokenizer.

No model weights: an InternVL2.5-1B-style tokenizer (Qwen2 + InternVL tokens at their real ids) and
swift's ModelInfo/ModelMeta for ``internvl_chat`` are enough for ``Template.encode``; ``_post_encode``
(vision features into the embeddings) needs the real model and is not run here.
"""
import copy

import pytest
from PIL import Image

torch = pytest.importorskip('torch')
pytest.importorskip('swift')

from fundusexpert_plugin.swift_plugin.system_prompt import SYSTEM_PROMPTS  # noqa: E402
from fundusexpert_plugin.tasks.config import default_tasks_dir, load_task  # noqa: E402
from fundusexpert_plugin.tasks.render import RenderContext, render_rows  # noqa: E402
from fundusexpert_plugin.testing.tiny_models import build_internvl2_5_tokenizer  # noqa: E402

W, H = 4288, 2848   # an IDRiD photograph at full size


@pytest.fixture(scope='module')
def template(swift_registered):
    from swift.model import MODEL_MAPPING
    from swift.model.model_meta import ModelInfo
    from swift.template import get_template

    tokenizer = build_internvl2_5_tokenizer()
    tokenizer.model_info = ModelInfo(model_type='internvl_chat', model_dir='/nonexistent/InternVL2_5-1B',
                                     torch_dtype=torch.bfloat16, max_model_len=8192, quant_method=None,
                                     quant_bits=None, is_multimodal=True, task_type='causal_lm')
    tokenizer.model_meta = MODEL_MAPPING['internvl_chat']   # InternVL2.5 checkpoints are internvl_chat
    return lambda: get_template(tokenizer, template_type='fundusexpert_internvl2_5')


def test_tokenizer_has_internvl_tokens_at_their_ids():
    tok = build_internvl2_5_tokenizer()
    assert [tok.convert_tokens_to_ids(t) for t in ('<img>', '</img>', '<IMG_CONTEXT>', '<quad>', '</quad>', '<ref>',
                                                   '</ref>', '<box>', '</box>')] == list(range(151665, 151674))
    assert tok.convert_tokens_to_ids('<|im_end|>') == 151645


def test_region_detection_row_encodes_with_tiles_and_merged_boxes(template, make_record, tmp_path, monkeypatch):
    monkeypatch.setenv('MAX_NUM', '6')       # the paper's setting
    monkeypatch.setenv('INPUT_SIZE', '448')
    image = tmp_path / 'idrid.jpg'
    Image.new('RGB', (W, H), (120, 40, 20)).save(image)
    # IDRiD 0003 optic disc (665, 958, 1264, 1628) and two hard exudate boxes, pixels of the 4288 x 2848 photo
    record = make_record([('optic_disc', (665, 958, 1264, 1628)), ('hard_exudates', (2397, 617, 3118, 1518)),
                          ('hard_exudates', (1072, 712, 1608, 1068))], width=W, height=H, image=str(image))
    task = load_task(default_tasks_dir() / 'region_detection.yaml')
    rows = render_rows(record, task, 'en', RenderContext(tmp_path, tmp_path))
    row = next(r for r in rows if r['target'] == 'hard_exudates')
    row['images'] = [str(image)]
    tpl = template()
    tpl.set_mode('train')
    enc = tpl.encode(copy.deepcopy(row))

    # Tiles (InternVL dynamic_preprocess, swift vision_utils._dynamic_preprocess): aspect 4288 / 2848 = 1.5056.
    # Candidate grids (i, j) with i * j <= 6; |1.5056 - i/j|: (3, 2) 0.0056, (1, 1) 0.51, (2, 1) 0.49,
    # (4, 3) is not allowed (12 > 6) -> (3, 2): 3 x 2 = 6 tiles of 448 px, plus one 448 px thumbnail = 7.
    assert tuple(enc['pixel_values'].shape) == (7, 3, 448, 448)
    # <IMG_CONTEXT> per tile: (448 // 14)**2 * 0.5**2 = 32 * 32 / 4 = 256 -> 7 * 256 = 1792
    assert enc['input_ids'].count(151667) == 1792

    # Boxes on the 0-999 grid, int(v / W * 1000): first exudate (largest, 721 x 901 px) 2397/4288 = 0.55900 -> 559,
    # 617/2848 = 0.21664 -> 216, 3118/4288 = 0.72714 -> 727, 1518/2848 = 0.53301 -> 533; second 1072/4288 = 0.25
    # -> 250, 712/2848 -> 250, 1608/4288 = 0.375 -> 375, 1068/2848 -> 375; one <box> tag for both (paper form)
    prompt = row['messages'][0]['content'].replace('<image>', '')
    assert prompt in ('Locate the hard exudates in this colour fundus photograph.',
                      'Detect the hard exudates in this fundus image and give the bounding-box coordinates.')
    answer = '<ref>hard exudates</ref><box>[[559, 216, 727, 533], [250, 250, 375, 375]]</box><|im_end|>\n'
    expected = (f'<|im_start|>system\n{SYSTEM_PROMPTS["en"]}<|im_end|>\n<|im_start|>user\n<img>'
                + '<IMG_CONTEXT>' * 1792 + f'</img>\n{prompt}<|im_end|>\n<|im_start|>assistant\n' + answer)
    assert tpl.tokenizer.decode(enc['input_ids']) == expected
    labels = [t for t in enc['labels'] if t != -100]
    assert tpl.tokenizer.decode(labels) == answer


def test_grounded_report_row_encodes_every_reference(template, make_record, tmp_path, monkeypatch):
    monkeypatch.setenv('MAX_NUM', '6')
    image = tmp_path / 'idrid.jpg'
    Image.new('RGB', (W, H)).save(image)
    record = make_record([('optic_disc', (665, 958, 1264, 1628)), ('hard_exudates', (2397, 617, 3118, 1518))],
                         width=W, height=H, image=str(image), laterality='left', laterality_source='optic_disc_position')
    (row,) = render_rows(record, load_task(default_tasks_dir() / 'grounded_report.yaml'), 'zh',
                         RenderContext(tmp_path, tmp_path))
    row['images'] = [str(image)]
    tpl = template()
    tpl.set_mode('train')
    text = tpl.tokenizer.decode(tpl.encode(copy.deepcopy(row))['input_ids'])
    assert '<ref>视盘</ref><box>[[155, 336, 294, 571]]</box>位于图像左侧。' in text
    assert '<ref>硬性渗出</ref><box>[[559, 216, 727, 533]]</box>：1处' in text
    assert text.count('<IMG_CONTEXT>') == 1792


def test_max_num_is_read_from_the_environment(template, tmp_path, monkeypatch):
    # MAX_NUM=4: grids with i * j <= 4; |1.5056 - i/j|: (1, 1) 0.5056, (2, 1) 0.4944, (2, 2) 0.5056 -> (2, 1):
    # 2 tiles + thumbnail = 3, 3 * 256 = 768 <IMG_CONTEXT> tokens
    monkeypatch.setenv('MAX_NUM', '4')
    image = tmp_path / 'idrid.jpg'
    Image.new('RGB', (W, H)).save(image)
    row = {'messages': [{'role': 'user', 'content': '<image>Describe.'}, {'role': 'assistant', 'content': 'x'}],
           'images': [str(image)]}
    tpl = template()
    tpl.set_mode('train')
    enc = tpl.encode(row)
    assert tuple(enc['pixel_values'].shape) == (3, 3, 448, 448) and enc['input_ids'].count(151667) == 768
