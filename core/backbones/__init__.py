"""Pretrained backbones shared by more than one model kind (weights ship in a package)."""
