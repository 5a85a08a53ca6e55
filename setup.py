"""Build hook: ship the top-level ``templates/`` task YAMLs inside the wheel.

The task YAMLs live at the repository's top level (``templates/``, next to the package, so a new
task needs no code); the wheel carries them as ``fundusexpert_plugin/templates/``, where
:func:`fundusexpert_plugin.tasks.config.default_tasks_dir` looks in an installed package.
Everything else is configured in ``pyproject.toml``.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithTemplates(build_py):
    """``build_py`` that also copies ``templates/*.yaml`` and ``*.yml`` into the built package."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / 'fundusexpert_plugin' / 'templates'
        target.mkdir(parents=True, exist_ok=True)
        folder = Path(__file__).resolve().parent / 'templates'
        for src in sorted([*folder.glob('*.yaml'), *folder.glob('*.yml')]):
            self.copy_file(str(src), str(target / src.name))


setup(cmdclass={'build_py': BuildPyWithTemplates})
