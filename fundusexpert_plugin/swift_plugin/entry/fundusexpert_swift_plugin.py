"""The file passed to ``swift sft|infer|export|eval --external_plugins``.

ms-swift imports it by its base name after putting this folder on ``sys.path``, so it only uses
absolute imports and this folder holds nothing else. Importing it registers, with ms-swift:
the ``fundusgen`` / ``fundusgen_heldout`` datasets, the ``fundusexpert_qwen2_5_vl`` /
``fundusexpert_internvl`` templates, and whatever loss, loss scale, eval metric and GRPO reward
(``orms``) modules of :mod:`fundusexpert_plugin.swift_plugin` are present.
``fundusexpert swift plugin-path`` prints its path.
"""
from fundusexpert_plugin.swift_plugin import registry

registry.register_all()
