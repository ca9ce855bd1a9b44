"""Widgets and helpers that more than one page uses: background jobs, icons, plots, zoomable
image panes, the heatmap view, thumbnails, label undo, remembered dialog folders."""
