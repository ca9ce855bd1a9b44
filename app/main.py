"""Entry of the desktop app (placeholder until app/main_window.py lands)."""


def run_gui(project_dir=None) -> int:
    from app.main_window import launch

    return launch(project_dir)
