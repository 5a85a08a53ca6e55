"""Tasks: the task YAML schema, record fields, and record -> ms-swift rows for every task kind.

Takes task YAMLs and records; gives rows (`messages`, `images`, `objects` + metadata). Imports :mod:`~fundusexpert_plugin.render` and :mod:`~fundusexpert_plugin.core`.
"""
