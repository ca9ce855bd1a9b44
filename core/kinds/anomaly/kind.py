"""The "anomaly" model kind's declaration (defect_studio.kinds.base.ModelKind): light, no torch."""

from defect_studio.kinds.base import ModelKind

KIND = ModelKind(
    name="anomaly",
    title="Anomaly model (good parts only)",
    models=("anomaly", "anomaly-sspcab", "anomaly-kd"),
    trains_on="ok_only",
    train="defect_studio.kinds.anomaly.train:train",
    predictor="defect_studio.kinds.anomaly.predictor:AnomalyPredictor",
    evaluate="defect_studio.kinds.anomaly.evaluate:evaluate_anomaly_run",
    config="defect_studio.kinds.anomaly.config:AnomalyConfig",
    export="defect_studio.kinds.anomaly.export:export_onnx",
    model_titles=(("anomaly", "Anomaly model (good parts only)"),
                  ("anomaly-sspcab", "Anomaly model without SimAM (ablation)"),
                  ("anomaly-kd", "Anomaly model, plain distillation (ablation)")),
    data_parallel=True,
    input_rule="defect_studio.kinds.anomaly.config:input_rule",
    time_probe="defect_studio.kinds.anomaly.probe:plan_run",
    loss_names=("distillation", "SSPCAB"),
)
