"""The "segdec" model kind's declaration (defect_studio.kinds.base.ModelKind): light, no torch."""

from defect_studio.kinds.base import ModelKind

KIND = ModelKind(
    name="segdec",
    title="Segmentation + decision (mixed supervision)",
    models=("mffpa", "mixsup", "mixsup+mff", "mixsup+pa"),
    trains_on="mixed",
    data_parallel=True,
    train="defect_studio.kinds.segdec.train:train",
    predictor="defect_studio.kinds.segdec.predictor:Predictor",
    evaluate="defect_studio.evaluation.evaluate:evaluate_run",
    config="defect_studio.kinds.segdec.config:TrainConfig",
    export="defect_studio.kinds.segdec.export:export_onnx",
    model_titles=(("mffpa", "MFFPA"), ("mixsup", "MixSup (baseline)"),
                  ("mixsup+mff", "MixSup + MFF (ablation)"),
                  ("mixsup+pa", "MixSup + PA (ablation)")),
    presets=("quick", "thorough", "ksdd", "ksdd2", "dagm", "severstal"),
    input_rule="defect_studio.kinds.segdec.models:input_rule",
    time_probe="defect_studio.kinds.segdec.probe:plan_run",
)
