"""Data files of the app (icons, demo-data recipe), installed beside `core` and `app`."""
