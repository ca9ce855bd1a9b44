"""The cold-start anomaly model (good parts only): config, training, predictor, evaluation.

The network is core.models.anomaly; this package plugs it into the job machinery as model
kind "anomaly" (core.models.kinds).
"""
