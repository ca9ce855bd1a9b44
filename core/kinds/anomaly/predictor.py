"""AnomalyPredictor: a trained anomaly run with the interface of every kind's predictor
(defect_studio.inference.predictor.RunPredictor).

Score = the calibrated image score in [0, 1) (0.5 = the run's calibrated threshold, see
defect_studio.kinds.anomaly.network.AnomalyNet.to_score); heatmap = the calibrated anomaly map
at the image's resolution, so ``heatmap >= threshold`` is a proposed defect mask.
"""

from __future__ import annotations

import torch

from defect_studio.errors import ModelFileError
from defect_studio.inference.prediction import predictions_from_maps
from defect_studio.inference.predictor import Prediction, RunPredictor


class AnomalyPredictor(RunPredictor):
    """``AnomalyPredictor(run_dir, device="auto")``; predict / predict_many / threshold / run_id
    as RunPredictor."""

    def _load_model(self) -> None:
        from defect_studio.kinds.anomaly.network import AnomalyNet
        from defect_studio.kinds.anomaly.train import read_anomaly_config
        from defect_studio.training.checkpoint import MODEL_FILE, load_torch

        self.config = read_anomaly_config(self.run_dir)
        path = self.run_dir / MODEL_FILE
        sd = load_torch(path, "cpu")
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise ModelFileError(f"{path} is not a model state dict (names -> tensors)")
        c = self.config
        self.model = AnomalyNet(width=c.width, sigma=c.sigma, map_taps=c.map_taps,
                                **c.switches())
        try:
            self.model.load_student_state(sd)
        except RuntimeError as e:
            raise ModelFileError(f"{path} does not fit model {c.model!r}: {e}") from None

    def _run(self, batch: list[torch.Tensor], shapes: list[tuple[int, int]]) -> list[Prediction]:
        x = torch.stack(batch).to(self.device)
        with torch.inference_mode():
            maps = self.model.to_score(self.model(x)).float().cpu().numpy()
        return predictions_from_maps([m.max() for m in maps], maps, self.config, shapes,
                                     self._threshold)
