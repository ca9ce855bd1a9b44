"""Page 3, Evaluate: curves, threshold and confusion matrix, report, the mask sweep."""
