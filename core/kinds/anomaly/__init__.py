"""The cold-start anomaly model (good parts only): config, training, predictor, evaluation.

The network is defect_studio.kinds.anomaly.network; this package plugs it into the job
machinery as model kind "anomaly" (defect_studio.kinds).
"""
