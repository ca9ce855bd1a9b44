"""Model kind "segdec": segmentation + decision networks (MixSup baseline, MFFPA) trained with
mixed supervision (image labels for most images, pixel masks for a few)."""
