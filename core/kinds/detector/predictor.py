"""The detector's predictor: the defect_studio.inference.predictor.RunPredictor interface (score,
is_ng, heatmap, threshold, predict_many) plus the boxes with their type and confidence.

Score = the highest box confidence; heatmap = each box's area filled with its
confidence (the highest where boxes overlap), at the image's resolution.
"""

from __future__ import annotations

import torch

from defect_studio.errors import ModelFileError

# the boxes, their prediction and heatmap are torch-free, shared with the deployed runtime
# (defect_studio.deploy.runtime); re-exported here
from defect_studio.inference.prediction import (
    DetectedBox,
    DetectionPrediction,
    boxes_heatmap,
)
from defect_studio.inference.predictor import RunPredictor

MIN_BOX_SCORE = 0.05  # boxes below this confidence are not returned


class DetectorPredictor(RunPredictor):
    """A trained detector run ready to score images (see RunPredictor)."""

    def _load_model(self) -> None:
        from defect_studio.kinds.detector.network import build_detector
        from defect_studio.kinds.detector.train import read_detector_config
        from defect_studio.training.checkpoint import MODEL_FILE, check_state_dict, load_torch

        path = self.run_dir / MODEL_FILE
        self.config, self.classes = read_detector_config(self.run_dir)
        if not self.classes:
            raise ModelFileError(f"{self.run_dir} names no defect types in its config.json")
        # the saved weights replace the pretrained ones: do not read the package's file
        self.model = build_detector(self.config.__class__.from_dict(
            {**self.config.to_dict(), "pretrained": False}), len(self.classes))
        sd = check_state_dict(load_torch(path, "cpu"), path)
        try:
            self.model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise ModelFileError(f"{path} does not fit the detector of this run: "
                                 f"{str(e).splitlines()[0]}") from None

    def _run(self, batch: list[torch.Tensor], shapes: list[tuple[int, int]]
             ) -> list[DetectionPrediction]:
        from defect_studio.kinds.detector.data import to_image_scale

        with torch.inference_mode():
            results = self.model([x.to(self.device) for x in batch])
        out = []
        for r, shape in zip(results, shapes):
            keep = r["scores"] >= MIN_BOX_SCORE
            xyxy = to_image_scale(r["boxes"][keep].cpu().numpy(), self.config, shape)
            scores = r["scores"][keep].cpu().numpy().tolist()
            labels = (r["labels"][keep].cpu().numpy() - 1).tolist()
            boxes = tuple(DetectedBox(self.classes[int(c)], float(x0), float(y0),
                                      float(x1 - x0), float(y1 - y0), float(s))
                          for (x0, y0, x1, y1), s, c in zip(xyxy, scores, labels)
                          if 0 <= c < len(self.classes))
            boxes = tuple(sorted(boxes, key=lambda b: -b.score))
            score = boxes[0].score if boxes else 0.0
            out.append(DetectionPrediction(score=score, is_ng=score >= self._threshold,
                                           heatmap=boxes_heatmap(list(boxes), shape),
                                           boxes=boxes))
        return out
