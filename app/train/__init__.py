"""Page 2, Train: settings, one-click background training, live curves, the run history."""
