"""Everything ms-swift sees: datasets, templates, loss, loss scale and eval metric registrations.

Only :mod:`.entry.fundusexpert_swift_plugin` acts at import (it is the file passed to
``swift ... --external_plugins``); the modules here define ``register()`` functions.
"""
