"""The Defect Studio desktop app (PySide6). core/ holds everything that is not GUI.

PySide6 is pinned to 6.11.3 in pyproject.toml: 6.12.0 releases a reference to None on
every call of a method that returns nothing, which aborts CPython 3.11 ("none_dealloc")
after minutes of live plotting. tests/test_gui_main.py guards against a return of it.
"""
