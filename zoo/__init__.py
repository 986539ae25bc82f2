"""The project's trained results, shipped as package data: see ``ensemble.zoo`` and ``zoo/README.md``.

Nothing here is code to import: ``MANIFEST.json``, ``runs/<run>/`` and ``models/<run>.keras`` are read
through ``ensemble.zoo``, which checks each file's sha256 before use.
"""
