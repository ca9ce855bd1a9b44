"""Scoring images with a trained run: decision score, OK/NG and a defect heatmap.

The predictor preprocesses with defect_studio.training.data.preprocess_image, the code
training uses, so a run scores an image exactly as it was validated; the
heatmap is mapped back with the same geometry (defect_studio.preprocess.fit_geometry).
"""

from __future__ import annotations

import torch

from defect_studio.inference.prediction import predictions_from_maps
from defect_studio.inference.predictor import Prediction, RunPredictor


class Predictor(RunPredictor):
    """A trained segdec run ready to score images (defect_studio.inference.predictor.RunPredictor).

    ``Predictor(run_dir, device="auto")`` loads the run's config and weights (via
    defect_studio.kinds.segdec.runmodel.load_run_model) and its threshold. ``threshold`` can be
    changed afterwards (a user's operating point). Not thread-safe: one predictor
    per worker thread.
    """

    def _load_model(self) -> None:
        """Set ``self.model`` and ``self.config`` from the run folder."""
        from defect_studio.kinds.segdec.runmodel import load_run_model
        from defect_studio.kinds.segdec.tiles import scoring_model

        net, self.config = load_run_model(self.run_dir, self.device)
        # a run trained on crops scores overlapping crop-size tiles (segdec/tiles.py)
        self.model = scoring_model(net, self.config)

    def _run(self, batch: list[torch.Tensor], shapes: list[tuple[int, int]]) -> list[Prediction]:
        x = torch.stack(batch).to(self.device)
        with torch.inference_mode():
            seg_logits, dec_logits = self.model(x)
            scores = torch.sigmoid(dec_logits.float().reshape(-1)).cpu().numpy()
            seg = torch.sigmoid(seg_logits.float()[:, 0]).cpu().numpy()
        return predictions_from_maps(scores, seg, self.config, shapes, self._threshold)
