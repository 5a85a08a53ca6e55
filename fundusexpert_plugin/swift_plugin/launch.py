"""Launching ms-swift commands as subprocesses: the ``swift`` executable, logged runs, checkpoints.

``swift <cmd>`` itself starts ``python swift/cli/<cmd>.py`` (or ``torchrun`` when
``NPROC_PER_NODE``/``NNODES`` is set), so the environment passed here is what selects single
process or distributed training, exactly as on the command line.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

logger = logging.getLogger(__name__)

#: a swift per-step log line or a tqdm bar: what :func:`run_logged` echoes
_PROGRESS = re.compile(r"'global_step/max_steps'|\d+%\|")


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


def run_logged(cmd: List[str], log_path: Path, env: Dict[str, str], *, label: str = '',
               every_s: float = 5.0, echo=print) -> None:
    """Run a command, writing all of its output to ``log_path`` and echoing its progress lines.

    Lines matching swift's per-step log (``'global_step/max_steps'``) or a tqdm bar (``NN%|``) are
    passed to ``echo`` (prefixed with ``label``), at most one every ``every_s`` seconds plus the last
    one, so a long ``swift sft`` is never silent. tqdm's carriage returns end a line (text mode).

    Raises:
        RuntimeError: non-zero exit, with the last lines of the log.
    """
    logger.info('running: %s', ' '.join(cmd))
    last_echo, pending = 0.0, None
    with log_path.open('w') as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, text=True, errors='replace')
        for line in proc.stdout:
            log.write(line)
            if _PROGRESS.search(line):
                pending = line.strip()
                if time.time() - last_echo >= every_s:
                    echo(f'{label}{_progress_text(pending)}')
                    last_echo, pending = time.time(), None
        proc.wait()
    if pending:
        echo(f'{label}{_progress_text(pending)}')
    if proc.returncode != 0:
        tail = '\n'.join(log_path.read_text(errors='replace').splitlines()[-30:])
        raise RuntimeError(f'{cmd[0]} {cmd[1]} failed (exit {proc.returncode}); log: {log_path}\n{tail}')


def _progress_text(line: str) -> str:
    """A short form of one swift progress line: step, loss, token accuracy, time left; or the bar."""
    step = re.search(r"'global_step/max_steps': '([^']+)'", line)
    if not step:
        return line[-120:]
    fields = {k: re.search(rf"'{k}': '([^']+)'", line) for k in ('loss', 'token_acc', 'remaining_time')}
    return f'step {step.group(1)}' + ''.join(f', {k} {m.group(1)}' for k, m in fields.items() if m)


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
