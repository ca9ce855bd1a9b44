"""The window shell: the entry point, the main window with its menus and four pages, theme,
shortcuts, project and import dialogs."""
