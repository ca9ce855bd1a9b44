"""Box detection with defect types: the relational enhancement detector
(docs/models.md) on torchvision's two-stage components, its training job, predictor and
box evaluation. Registered as model kind "detector" (defect_studio.kinds).

Importing this package stays light; torch is imported by the submodules.
"""
