"""Page 1, Label: the image browser, the mask canvas and its tools, boxes and defect types."""
