"""The "detector" model kind's declaration (defect_studio.kinds.base.ModelKind): light, no torch."""

from defect_studio.kinds.base import ModelKind

KIND = ModelKind(
    name="detector",
    title="Defect boxes with types (relational enhancement detector)",
    models=("relational", "detector"),
    trains_on="boxes",
    train="defect_studio.kinds.detector.train:train",
    predictor="defect_studio.kinds.detector.predictor:DetectorPredictor",
    evaluate="defect_studio.kinds.detector.evaluate:evaluate_detector",
    config="defect_studio.kinds.detector.config:DetectorConfig",
    export="defect_studio.kinds.detector.export:export_onnx",
    model_titles=(("relational", "Relational detector (boxes with types)"),
                  ("detector", "Plain two-stage detector (ablation)")),
    outputs_boxes=True,
    data_parallel=True,
    input_rule="defect_studio.kinds.detector.config:input_rule",
    time_probe="defect_studio.kinds.detector.probe:plan_run",
    batch_setting="batch_size",
    loss_names=("region proposal", "box head"),
    summary_lines="defect_studio.kinds.detector.evaluate:summary_lines",
)
