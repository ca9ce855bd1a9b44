"""Page 4, Review: parts worst-first with score, OK/NG and heatmap; corrections become labels."""
