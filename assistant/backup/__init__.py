"""Backups: one archive holding the database and the uploaded originals, and its restore.

``services`` is the one path (``manage.py backup`` / ``restore`` call it); ``archive``
writes and checks the archive; ``postgresql`` and ``sqlite`` copy each database while
the product runs and put it back. The indexes are not in the archive: they are caches
of the database, rebuilt after a restore. See docs/backups.md.
"""
