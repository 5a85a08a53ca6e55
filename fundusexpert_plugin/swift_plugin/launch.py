"""Launching ms-swift commands as subprocesses: the ``swift`` executable, logged runs, checkpoints.

``swift <cmd>`` itself starts ``python swift/cli/<cmd>.py`` (or ``torchrun`` when
``NPROC_PER_NODE``/``NNODES`` is set), so the environment passed here is what selects single
process or distributed training, exactly as on the command line.
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

logger = logging.getLogger(__name__)


def swift_executable() -> str:
    """The ``swift`` console script of the running interpreter's environment.

    Raises:
        FileNotFoundError: ms-swift's ``swift`` command is not installed.
    """
    candidate = Path(sys.executable).parent / 'swift'
    found = str(candidate) if candidate.exists() else shutil.which('swift')
    if not found:
        raise FileNotFoundError('the `swift` command (ms-swift) is not installed in this environment')
    return found


def run_logged(cmd: List[str], log_path: Path, env: Dict[str, str]) -> None:
    """Run a command, teeing its output to ``log_path``.

    Raises:
        RuntimeError: non-zero exit, with the last lines of the log.
    """
    logger.info('running: %s', ' '.join(cmd))
    with log_path.open('w') as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = '\n'.join(log_path.read_text(errors='replace').splitlines()[-30:])
        raise RuntimeError(f'{cmd[0]} {cmd[1]} failed (exit {proc.returncode}); log: {log_path}\n{tail}')


def last_checkpoint(output_dir: Path) -> Path:
    """Newest ``checkpoint-*`` folder under a swift ``--output_dir``.

    Raises:
        FileNotFoundError: no checkpoint was saved.
    """
    ckpts = sorted(Path(output_dir).glob('**/checkpoint-*'), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise FileNotFoundError(f'no checkpoint-* folder under {output_dir}')
    return ckpts[-1]


def log_history(checkpoint: Path) -> List[dict]:
    """The HF Trainer ``log_history`` of a checkpoint's ``trainer_state.json`` (one dict per logging
    or evaluation step: ``step`` plus ``loss`` or ``eval_loss`` ...)."""
    return json.loads((Path(checkpoint) / 'trainer_state.json').read_text()).get('log_history', [])
