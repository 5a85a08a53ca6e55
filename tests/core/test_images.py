"""Every odd input gets a defined behaviour: converted, or skipped with a reason."""
import numpy as np
import pytest
from PIL import Image

from fundusexpert_plugin.core.images import (DEFAULT_MAX_PIXELS, ImageSkip, list_images, load_image, save_image,
                                             set_max_pixels, shard, shard_of, was_greyscale)


def test_plain_rgb_is_unchanged(tmp_path):
    Image.new('RGB', (40, 30), (10, 20, 30)).save(tmp_path / 'a.png')
    im = load_image(tmp_path / 'a.png')
    assert (im.width, im.height, im.conversion) == (40, 30, '') and tuple(im.rgb[0, 0]) == (10, 20, 30)
    assert tuple(im.bgr()[0, 0]) == (30, 20, 10)


@pytest.mark.parametrize('mode,value,expected,note', [
    ('L', 77, (77, 77, 77), 'L->RGB'),
    ('RGBA', (200, 100, 50, 0), (0, 0, 0), 'RGBA->RGB (alpha on black)'),   # transparent: fundus background
    ('RGBA', (200, 100, 50, 255), (200, 100, 50), 'RGBA->RGB (alpha on black)'),
    ('LA', (90, 128), (45, 45, 45), 'LA->RGB (alpha on black)'),             # 90 * 128/255 = 45.2
    ('1', 1, (255, 255, 255), '1->RGB'),
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


@pytest.mark.parametrize('values, expected, divisor', [
    # 8-bit values times 65536 (24 significant bits): / 65536 gives the 8-bit values back
    ([0, 100 * 65536, 255 * 65536], [0, 100, 255], 65536),
    # 20-bit data (largest 2**20 - 1): / 4096
    ([0, 100 * 4096, 2 ** 20 - 1], [0, 100, 255], 4096),
    # 16-bit data in a 32-bit file: / 256, as a 16-bit file
    ([0, 25600, 51200], [0, 100, 200], 256),
    # 8-bit data in a 32-bit file: as is; a negative value is black
    ([-5, 100, 200], [0, 100, 200], 1),
])
def test_32_bit_integer_is_scaled_by_the_bit_depth_of_its_largest_value(tmp_path, values, expected, divisor):
    arr = np.array([values], dtype=np.int32)
    Image.fromarray(arr).save(tmp_path / 'i32.tif')
    assert Image.open(tmp_path / 'i32.tif').mode == 'I'
    im = load_image(tmp_path / 'i32.tif')
    assert im.conversion == f'I 32-bit->8-bit RGB (value / {divisor})'
    assert im.rgb[0, :, 0].tolist() == expected and (im.rgb[..., 0] == im.rgb[..., 2]).all()
    assert was_greyscale(im.conversion)


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


def test_hash_shards_partition_and_keep_each_item_in_place():
    import hashlib
    items = [f'{i:02d}' for i in range(10)]
    parts = [shard(items, i, 3) for i in range(3)]
    # reference: first 8 bytes of SHA-256 of the key, big-endian, mod 3
    expected = [[k for k in items if int(hashlib.sha256(k.encode()).hexdigest()[:16], 16) % 3 == i] for i in range(3)]
    assert parts == expected and sorted(k for part in parts for k in part) == items
    assert [shard_of(k, 3) for k in ('00', '01', '02')] == [int(hashlib.sha256(k.encode()).hexdigest()[:16], 16) % 3
                                                             for k in ('00', '01', '02')]
    # an added item does not move the others (round-robin by position would move most of them)
    grown = [shard(['000'] + items, i, 3) for i in range(3)]
    assert [[k for k in part if k != '000'] for part in grown] == parts
    assert shard([{'k': 'a'}], shard_of('a', 2), 2, key=lambda item: item['k']) == [{'k': 'a'}]
    with pytest.raises(ValueError, match='shard 3/3'):
        shard(items, 3, 3)


def test_one_image_file_is_a_one_photo_listing_and_a_list_is_read_as_text(tmp_path):
    from fundusexpert_plugin.core.errors import FundusDataError
    from fundusexpert_plugin.sample import SAMPLE_DIR
    photo = SAMPLE_DIR / 'images' / '0003.jpg'
    assert list_images(photo) == [photo]                       # a JPEG is not a list of paths (0xff first)
    Image.new('RGB', (9, 7)).save(tmp_path / 'photo.list', format='PNG')  # by content, not the suffix
    assert list_images(tmp_path / 'photo.list') == [tmp_path / 'photo.list']
    (tmp_path / 'list.txt').write_bytes(b'0003.jpg\nph\xe9oto.jpg\n')  # Latin-1 on line 2, byte 11
    with pytest.raises(FundusDataError, match=r'list\.txt:2: byte offset 11 is not UTF-8'):
        list_images(tmp_path / 'list.txt')


def test_folder_listing_leaves_out_an_excluded_subfolder(tmp_path):
    for name in ('a.jpg', 'out/images/a.png', 'outside/b.jpg'):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b'x')
    rel = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, exclude=tmp_path / 'out')]
    assert rel == ['a.jpg', 'outside/b.jpg']                   # 'outside' shares the prefix but is listed
    assert len(list_images(tmp_path, exclude=tmp_path.parent / 'elsewhere')) == 3


def test_palette_with_transparency_goes_on_black(tmp_path):
    img = Image.new('P', (4, 4), 1)
    img.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.save(tmp_path / 'p.png', transparency=1)       # index 1 (red) is transparent
    im = load_image(tmp_path / 'p.png')
    assert im.conversion == 'P (transparent)->RGB (alpha on black)' and tuple(im.rgb[1, 1]) == (0, 0, 0)


def test_content_not_extension_decides(tmp_path):
    Image.new('RGB', (9, 7), (1, 2, 3)).save(tmp_path / 'really_a_png.jpg', format='PNG')
    assert load_image(tmp_path / 'really_a_png.jpg').rgb.shape == (7, 9, 3)
    (tmp_path / 'page.jpg').write_text('<html><body>404</body></html>')
    (tmp_path / 'empty.jpg').write_bytes(b'')
    (tmp_path / 'dir.jpg').mkdir()
    with pytest.raises(ImageSkip, match='unreadable or truncated') as exc:
        load_image(tmp_path / 'page.jpg')
    assert exc.value.reason == 'image_unreadable'
    with pytest.raises(ImageSkip, match=r'empty file \(0 bytes\)'):
        load_image(tmp_path / 'empty.jpg')
    with pytest.raises(ImageSkip, match='is a folder'):
        load_image(tmp_path / 'dir.jpg')


def test_multipage_tiff_warns_with_the_page_count(tmp_path):
    pages = [Image.new('RGB', (6, 5), (i * 40, 0, 0)) for i in range(3)]
    pages[0].save(tmp_path / 'm.tif', save_all=True, append_images=pages[1:])
    im = load_image(tmp_path / 'm.tif')
    assert im.warnings == [f'{tmp_path / "m.tif"}: has 3 pages/frames; only page 0 is used'] and im.rgb[0, 0, 0] == 0


def test_pixel_limit_and_sha256(tmp_path):
    import hashlib
    Image.new('RGB', (20, 20)).save(tmp_path / 'a.png')
    with pytest.raises(ImageSkip, match=r'a\.png: 20x20 = 400 pixels is above the limit of 100 pixels'):
        load_image(tmp_path / 'a.png', max_pixels=100)
    set_max_pixels(399)
    try:
        with pytest.raises(ImageSkip, match='decompression-bomb guard'):
            load_image(tmp_path / 'a.png')
    finally:
        set_max_pixels(DEFAULT_MAX_PIXELS)
    good = hashlib.sha256((tmp_path / 'a.png').read_bytes()).hexdigest()
    assert DEFAULT_MAX_PIXELS == 89_478_485 and Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS
    assert load_image(tmp_path / 'a.png', sha256=good).width == 20
    with pytest.raises(ImageSkip, match=f'sha256 {good} does not match the recorded {"0" * 64}'):
        load_image(tmp_path / 'a.png', sha256='0' * 64)


def test_max_side_decodes_smaller_and_keeps_the_upright_size(tmp_path):
    img = Image.new('RGB', (800, 400), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 400, 400))       # left half white
    exif = img.getexif()
    exif[0x0112] = 6                                   # displayed rotated: 400 wide, 800 high
    img.save(tmp_path / 'r.jpg', exif=exif, quality=95)
    im = load_image(tmp_path / 'r.jpg', max_side=200)
    assert im.original_size == (400, 800) and (im.width, im.height) == (100, 200)
    assert im.scale == (0.25, 0.25)
    assert im.rgb[20, 50].min() > 200 and im.rgb[180, 50].max() < 60   # upright: white on top


def test_save_image_writes_no_metadata(tmp_path):
    src = Image.new('RGB', (10, 10), (5, 5, 5))
    exif = src.getexif()
    exif[0x010E] = 'DOE^JANE'                          # ImageDescription
    src.save(tmp_path / 's.jpg', exif=exif, comment=b'DOE^JANE 12345')
    with Image.open(tmp_path / 's.jpg') as opened:
        assert opened.info.get('comment') == b'DOE^JANE 12345'
        out = save_image(opened, tmp_path / 'o.jpg')
    data = out.read_bytes()
    assert b'DOE^JANE' not in data and b'Exif' not in data
    with Image.open(out) as back:
        assert 'comment' not in back.info and not back.getexif()


def test_folder_listing_includes_dicom_by_suffix_or_content(tmp_path):
    from fundusexpert_plugin.testing.fake_dicom import write_fake_dicom
    rgb = np.zeros((8, 8, 3), np.uint8)
    write_fake_dicom(tmp_path / 'a.dcm', rgb)
    (tmp_path / 'sub').mkdir()
    write_fake_dicom(tmp_path / 'sub' / 'IM0001', rgb)
    (tmp_path / 'sub' / 'README').write_text('not DICOM, no suffix')
    write_fake_dicom(tmp_path / 'b.bin', rgb)  # another suffix: not opened, not listed
    Image.new('RGB', (4, 4)).save(tmp_path / 'c.png')
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ['a.dcm', 'c.png', 'sub/IM0001']


def test_a_raised_pixel_limit_also_raises_pillows_own_guard(tmp_path, monkeypatch):
    import fundusexpert_plugin.core.images as images
    Image.new('RGB', (30, 30)).save(tmp_path / 'a.png')        # 900 pixels
    monkeypatch.setattr(images, 'DEFAULT_MAX_PIXELS', 100)      # as if Pillow's default were 100:
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)         # Pillow alone would refuse it (> 2 x 100)
    try:
        set_max_pixels(1000)
        assert Image.MAX_IMAGE_PIXELS == 1000 and load_image(tmp_path / 'a.png').width == 30
        Image.new('RGB', (15, 10)).save(tmp_path / 'b.png')    # 150 pixels: under Pillow's 2 x 100
        set_max_pixels(50)                                      # lowered: ours refuses first, naming the limit
        assert Image.MAX_IMAGE_PIXELS == 100
        with pytest.raises(ImageSkip, match='15x10 = 150 pixels is above the limit of 50 pixels'):
            load_image(tmp_path / 'b.png')
        set_max_pixels(None)                                    # no limit at all
        assert Image.MAX_IMAGE_PIXELS is None and load_image(tmp_path / 'a.png').width == 30
        with pytest.raises(ValueError, match='max_pixels 0: expected at least 1 pixel'):
            set_max_pixels(0)
    finally:
        set_max_pixels(89_478_485)


@pytest.mark.parametrize('name', ['copy.png', 'copy.jpg'])
def test_a_write_cut_short_leaves_neither_a_truncated_image_nor_a_temporary_file(tmp_path, monkeypatch, name):
    import fundusexpert_plugin.core.images as images
    rgb = np.full((40, 60, 3), 120, np.uint8)
    target = tmp_path / 'images' / name
    save_image(np.zeros((40, 60, 3), np.uint8), target)
    before = target.read_bytes()

    def cut(fp):                        # half an image written, then the process is interrupted
        with open(fp, 'wb') as fh:
            fh.write(before[:len(before) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, 'save', lambda self, fp, *a, **k: cut(fp))       # the PNG path
    monkeypatch.setattr(images, '_write_jpeg', lambda rgb, fp, quality: cut(fp))      # the JPEG path
    with pytest.raises(KeyboardInterrupt):
        save_image(rgb, target)
    assert target.read_bytes() == before                      # the old file, whole
    assert sorted(p.name for p in target.parent.iterdir()) == [name]
    monkeypatch.undo()
    save_image(rgb, target)
    assert load_image(target).rgb.mean() == pytest.approx(120, abs=1)
    assert sorted(p.name for p in target.parent.iterdir()) == [name]
    with pytest.raises(ValueError, match=r"unknown image suffix '\.xyz'"):
        save_image(rgb, tmp_path / 'a.xyz')
