"""Baton benchmarks: figures, not pass/fail. ``python -m bench [engine|process|profile]``.

Every figure is printed with its target beside it. Everything runs on a SQLite file in WAL
mode in a temporary folder, with the real Engine, Store (one writer thread, group commit)
and timers. ``engine`` measures the engine in this process; ``process`` measures the
``baton`` command as whole processes; ``profile`` runs the sequential case under cProfile
and sorts the cost per step into store, templating, pydantic, events and the rest.
"""
