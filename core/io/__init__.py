"""Image reading/writing (`defect_studio.io.images`), crash-safe writes
(`defect_studio.io.atomic`) and the dataset importers/exporters."""
