"""Files written whole or not at all, and batches that leave no orphan files when they stop."""
import pytest


def test_removed_on_error_removes_only_the_files_a_stopped_batch_wrote_new(tmp_path):
    from fundusexpert_plugin.core.atomic import removed_on_error
    from fundusexpert_plugin.core.errors import FundusDataError
    old = tmp_path / 'old.png'
    old.write_bytes(b'earlier run')
    with pytest.raises(FundusDataError):
        with removed_on_error((FundusDataError,)) as new:
            for name in ('old.png', 'a.png', 'b.png'):
                new.add(tmp_path / name)
                (tmp_path / name).write_bytes(b'this run')
            raise FundusDataError('bad input')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['old.png'] and old.read_bytes() == b'this run'
    with pytest.raises(ValueError):                       # another error: the files stay
        with removed_on_error((FundusDataError,)) as new:
            new.add(tmp_path / 'c.png')
            (tmp_path / 'c.png').write_bytes(b'x')
            raise ValueError('not a data error')
    assert (tmp_path / 'c.png').exists()
