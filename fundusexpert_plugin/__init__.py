"""fundusexpert-plugin: FundusExpert (arXiv 2507.17539, ICCV 2025) rebuilt as an ms-swift plugin.

Importing this package is light: it imports neither ms-swift nor mmdet. The ms-swift registrations
live in :mod:`fundusexpert_plugin.swift_plugin` and run when ms-swift loads the file
``swift_plugin/entry/fundusexpert_swift_plugin.py`` (pass its path to ``--external_plugins``;
``fundusexpert swift plugin-path`` prints it).
"""
__version__ = '0.1.0'
