"""Every odd input gets a defined behaviour: converted, or skipped with a reason."""
import numpy as np
import pytest
from PIL import Image

from fundusexpert_plugin.core.images import ImageSkip, list_images, load_image, shard


def test_plain_rgb_is_unchanged(tmp_path):
    Image.new('RGB', (40, 30), (10, 20, 30)).save(tmp_path / 'a.png')
    im = load_image(tmp_path / 'a.png')
    assert (im.width, im.height, im.conversion) == (40, 30, '') and tuple(im.rgb[0, 0]) == (10, 20, 30)
    assert tuple(im.bgr()[0, 0]) == (30, 20, 10)


@pytest.mark.parametrize('mode,value,expected,note', [
    ('L', 77, (77, 77, 77), 'L->RGB'),
    ('RGBA', (200, 100, 50, 0), (200, 100, 50), 'RGBA->RGB'),
    ('CMYK', (0, 0, 0, 0), (255, 255, 255), 'CMYK->RGB'),
])
def test_modes_convert_to_rgb(tmp_path, mode, value, expected, note):
    path = tmp_path / ('x.jpg' if mode == 'CMYK' else 'x.png')
    Image.new(mode, (8, 6), value).save(path)
    im = load_image(path)
    assert im.conversion == note and im.rgb.shape == (6, 8, 3)
    assert np.abs(im.rgb[0, 0].astype(int) - expected).max() <= 2


def test_16_bit_is_scaled_to_8_bit(tmp_path):
    arr = np.full((4, 5), 51200, dtype=np.uint16)     # 51200 / 256 = 200
    Image.fromarray(arr).save(tmp_path / 'd.png')
    im = load_image(tmp_path / 'd.png')
    assert '16-bit->8-bit' in im.conversion and tuple(im.rgb[0, 0]) == (200, 200, 200)


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new('RGB', (40, 20), (0, 0, 0))
    img.putpixel((0, 0), (255, 255, 255))
    exif = img.getexif()
    exif[0x0112] = 6                                  # rotate 90 deg clockwise to display
    img.save(tmp_path / 'r.jpg', exif=exif, quality=100)
    im = load_image(tmp_path / 'r.jpg')
    assert (im.width, im.height) == (20, 40) and 'exif-rotated (orientation 6)' in im.conversion
    assert im.rgb[0, -1].min() > 200                  # the top-left pixel moved to the top-right


def test_missing_unreadable_truncated_are_skipped(tmp_path):
    with pytest.raises(ImageSkip, match='file not found'):
        load_image(tmp_path / 'none.jpg')
    (tmp_path / 'bad.jpg').write_bytes(b'not an image')
    with pytest.raises(ImageSkip, match='unreadable or truncated'):
        load_image(tmp_path / 'bad.jpg')
    Image.new('RGB', (200, 200), (9, 9, 9)).save(tmp_path / 'full.jpg')
    data = (tmp_path / 'full.jpg').read_bytes()
    (tmp_path / 'cut.jpg').write_bytes(data[:len(data) // 2])
    with pytest.raises(ImageSkip, match='unreadable or truncated'):
        load_image(tmp_path / 'cut.jpg')


def test_listing_and_empty_folder(tmp_path):
    (tmp_path / 'b').mkdir()
    for name in ('b/2.jpg', 'a.png', 'notes.txt'):
        (tmp_path / name).write_bytes(b'x')
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ['a.png', 'b/2.jpg']
    (tmp_path / 'list.txt').write_text('# photos\nb/2.jpg\n\na.png\n')
    assert [p.name for p in list_images(tmp_path / 'list.txt')] == ['2.jpg', 'a.png']
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='no image files'):
        list_images(tmp_path / 'empty')


def test_round_robin_shards_partition():
    items = list(range(10))
    parts = [shard(items, i, 3) for i in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    with pytest.raises(ValueError, match='shard 3/3'):
        shard(items, 3, 3)
