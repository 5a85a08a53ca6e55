"""One call that registers every ms-swift extension of this plugin (idempotent)."""
from __future__ import annotations

import importlib
import inspect
import logging

logger = logging.getLogger(__name__)

#: modules with a ``register(exist_ok)`` function, in registration order
MODULES = ['datasets', 'templates', 'loss_scale', 'loss', 'metrics', 'rewards', 'evalscope_benchmarks']
_done = False


def register_all() -> None:
    """Register datasets, templates, loss scale, loss, eval metric and GRPO rewards with ms-swift, and the
    ``swift eval`` benchmarks with evalscope when it is installed.

    Safe to call twice (the second call does nothing). Modules not present in this install are
    skipped with a debug log.
    """
    global _done
    if _done:
        return
    for name in MODULES:
        try:
            module = importlib.import_module(f'fundusexpert_plugin.swift_plugin.{name}')
        except ModuleNotFoundError as exc:
            if exc.name != f'fundusexpert_plugin.swift_plugin.{name}':
                raise
            logger.debug('fundusexpert: no %s module, skipped', name)
            continue
        if 'exist_ok' in inspect.signature(module.register).parameters:
            module.register(exist_ok=True)
        else:
            module.register()
    _done = True


def add_to_map(mapping: dict, name: str, value, *, exist_ok: bool, flag: str) -> None:
    """Register ``value`` under ``name`` in one of ms-swift's plain-dict registries (``loss_map``,
    ``loss_scale_map``, ``eval_metrics_map``, ``orms``), with ms-swift's ``exist_ok`` rule.

    Raises:
        ValueError: ``name`` is already registered and ``exist_ok`` is False.
    """
    if not exist_ok and name in mapping:
        raise ValueError(f'`{name}` has already been registered for {flag}; pass exist_ok=True to replace it.')
    mapping[name] = value


def plugin_path() -> str:
    """Absolute path of the ``--external_plugins`` file."""
    from pathlib import Path
    return str(Path(__file__).resolve().parent / 'entry' / 'fundusexpert_swift_plugin.py')
