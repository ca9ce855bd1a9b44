"""Image reading/writing (`core.io.images`), crash-safe writes (`core.io.atomic`) and the
dataset importers/exporters."""
