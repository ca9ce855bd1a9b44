"""The detector network: torchvision's Faster R-CNN with an EfficientNet-Lite0 + FPN
backbone, and the relational parts (relation networks + IoU-aware loss) as switches.

- ``geometry``: the relative geometry of each pair of regions (log offsets of the
  centres scaled by the box size, log size ratios), embedded with sin/cos of several
  wavelengths, as in relation networks (Hu et al. 2018).
- ``relation``: a multi-head relation module over all regions of an image; each head
  weighs the other regions by appearance (scaled dot product) times geometry
  (ReLU of a learnt projection of the embedding) and adds their mixed features.
- ``gate``: a learnt sigmoid gate, per region and channel, on the relation output
  before it is added (how much context a region takes in).
- ``iou_loss``: a position-sensitive classification loss: the target probability of
  a positive region's class is the IoU of its regressed box with its ground truth (the
  rest goes to "background"), so confidence ranks boxes by localisation quality.

Each image is resized to the config's input size before it enters the network.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign, box_iou

from defect_studio.backbones.efficientnet_lite import FEATURE_CHANNELS, efficientnet_lite0
from defect_studio.kinds.detector.config import (
    ANCHOR_BASE,
    ANCHOR_SIZES,
    ASPECT_RATIOS,
    DetectorConfig,
)

FPN_CHANNELS = 64
REPRESENTATION = 256  # size of a region's feature vector


class LiteFPNBackbone(nn.Module):
    """EfficientNet-Lite0 maps at strides 8, 16, 32 through a small FPN."""

    def __init__(self, pretrained: bool):
        super().__init__()
        self.body = efficientnet_lite0(pretrained=pretrained)
        # the classifier is not used: drop it from the detector's weights
        del self.body._conv_head, self.body._bn1, self.body._fc
        self.fpn = FeaturePyramidNetwork(list(FEATURE_CHANNELS), FPN_CHANNELS)
        self.out_channels = FPN_CHANNELS

    def forward(self, x: torch.Tensor) -> OrderedDict:
        feats = self.body.pyramid(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def geometry_embedding(boxes: torch.Tensor, dim: int = 64, wave: float = 1000.0
                       ) -> torch.Tensor:
    """[n, n, dim] sin/cos embedding of the relative geometry of n boxes (x0, y0, x1, y1).

    For regions m (row) and n (column): log(|dx| / w_m), log(|dy| / h_m), log(w_n / w_m),
    log(h_n / h_m), each scaled by 100 and embedded with dim / 8 wavelengths.
    """
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-3)
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-3)
    cx, cy = boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h
    dx = torch.log(((cx[None, :] - cx[:, None]).abs() / w[:, None]).clamp(min=1e-3))
    dy = torch.log(((cy[None, :] - cy[:, None]).abs() / h[:, None]).clamp(min=1e-3))
    dw = torch.log(w[None, :] / w[:, None])
    dh = torch.log(h[None, :] / h[:, None])
    pos = torch.stack([dx, dy, dw, dh], dim=-1) * 100.0  # [n, n, 4]
    n_freq = dim // 8
    freq = wave ** (-torch.arange(n_freq, device=boxes.device, dtype=pos.dtype) / n_freq)
    angles = pos[..., None] * freq  # [n, n, 4, n_freq]
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(2)  # [n, n, dim]


class RelationModule(nn.Module):
    """Relations between the regions of one image, added to each region's features."""

    def __init__(self, dim: int = REPRESENTATION, heads: int = 4, geo_dim: int = 64,
                 geometry: bool = True, gate: bool = True):
        super().__init__()
        self.heads, self.key_dim, self.geo_dim = heads, dim // heads, geo_dim
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)  # starts as the plain detector: no relation added
        nn.init.zeros_(self.out.bias)
        self.geometry = nn.Linear(geo_dim, heads) if geometry else None
        self.gate = nn.Linear(2 * dim, dim) if gate else None

    def forward(self, feats: torch.Tensor, proposals: list[torch.Tensor]) -> torch.Tensor:
        out, start = [], 0
        for boxes in proposals:
            n = boxes.shape[0]
            f = feats[start:start + n]
            start += n
            out.append(f + self._relate(f, boxes) if n else f)
        return torch.cat(out) if out else feats

    def _relate(self, f: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        n, H, dk = f.shape[0], self.heads, self.key_dim
        q = self.query(f).view(n, H, dk).transpose(0, 1)
        k = self.key(f).view(n, H, dk).transpose(0, 1)
        logits = q @ k.transpose(1, 2) / math.sqrt(dk)  # [H, n, n] appearance
        if self.geometry is not None:
            emb = geometry_embedding(boxes.detach(), self.geo_dim)
            w_geo = F.relu(self.geometry(emb)).permute(2, 0, 1)  # [H, n, n]
            logits = logits + torch.log(w_geo.clamp(min=1e-6))  # w_geo * exp(appearance)
        weights = torch.softmax(logits, dim=-1)
        v = self.value(f).view(n, H, dk).transpose(0, 1)
        rel = self.out((weights @ v).transpose(0, 1).reshape(n, H * dk))
        if self.gate is not None:
            rel = torch.sigmoid(self.gate(torch.cat([f, rel], dim=1))) * rel
        return rel


def iou_aware_loss(class_logits: torch.Tensor, box_regression: torch.Tensor,
                   labels: list[torch.Tensor], regression_targets: list[torch.Tensor],
                   proposals: list[torch.Tensor], box_coder) -> tuple[torch.Tensor, torch.Tensor]:
    """Position-sensitive classification loss (soft target = IoU) + torchvision's box loss."""
    _, box_loss = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
    labels_t = torch.cat(labels)
    targets_t = torch.cat(regression_targets)
    props = torch.cat(proposals)
    n, c = class_logits.shape
    soft = torch.zeros_like(class_logits)
    soft[torch.arange(n, device=soft.device), labels_t] = 1.0
    pos = torch.where(labels_t > 0)[0]
    if pos.numel():
        with torch.no_grad():
            reg = box_regression.reshape(n, -1, 4)[pos, labels_t[pos]]
            pred = box_coder.decode_single(reg.float(), props[pos])
            gt = box_coder.decode_single(targets_t[pos].float(), props[pos])
            iou = box_iou(pred, gt).diagonal().clamp(0.0, 1.0)
        soft[pos, labels_t[pos]] = iou.to(soft.dtype)
        soft[pos, 0] = (1.0 - iou).to(soft.dtype)
    cls_loss = -(soft * F.log_softmax(class_logits, dim=1)).sum(dim=1).mean()
    return cls_loss, box_loss


class RelationalRoIHeads(RoIHeads):
    """torchvision's box RoI heads with a relation module between box head and predictor,
    and optionally the position-sensitive loss."""

    def __init__(self, *args, relation: RelationModule | None = None, iou_loss: bool = False,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.relation = relation
        self.iou_loss = iou_loss

    def forward(self, features, proposals, image_shapes, targets=None):  # noqa: D102
        if self.training:
            proposals, _, labels, regression_targets = self.select_training_samples(
                proposals, targets)
        x = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        if self.relation is not None:
            x = self.relation(x, proposals)
        class_logits, box_regression = self.box_predictor(x)
        if self.training:
            loss = iou_aware_loss if self.iou_loss else None
            if loss is not None:
                cls, reg = loss(class_logits, box_regression, labels, regression_targets,
                                proposals, self.box_coder)
            else:
                cls, reg = fastrcnn_loss(class_logits, box_regression, labels,
                                         regression_targets)
            return [], {"loss_classifier": cls, "loss_box_reg": reg}
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression,
                                                            proposals, image_shapes)
        return [{"boxes": b, "scores": s, "labels": lab}
                for b, s, lab in zip(boxes, scores, labels)], {}


def build_detector(config: DetectorConfig, num_types: int) -> FasterRCNN:
    """The detector for ``num_types`` defect types (class 0 is background)."""
    sw = config.switches()
    W, H = config.input_size
    s = min(W, H) / float(ANCHOR_BASE)
    sizes = tuple(tuple(int(round(v * s)) for v in level) for level in ANCHOR_SIZES)
    anchors = AnchorGenerator(sizes=sizes, aspect_ratios=(ASPECT_RATIOS,) * len(sizes))
    backbone = LiteFPNBackbone(pretrained=config.pretrained)
    pool = MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=2)
    head = TwoMLPHead(FPN_CHANNELS * 7 * 7, REPRESENTATION)
    predictor = FastRCNNPredictor(REPRESENTATION, num_types + 1)
    model = FasterRCNN(
        backbone, num_classes=None, rpn_anchor_generator=anchors, box_roi_pool=pool,
        box_head=head, box_predictor=predictor, min_size=min(W, H), max_size=max(W, H),
        image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],  # the backbone normalises
        rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=100,
        box_batch_size_per_image=128, box_detections_per_img=50, box_score_thresh=0.01)
    relation = RelationModule(geometry=sw["geometry"], gate=sw["gate"]) if sw["relation"] \
        else None
    model.roi_heads = RelationalRoIHeads(
        pool, head, predictor, 0.5, 0.5, 128, 0.25, None, 0.01, 0.5, 50,
        relation=relation, iou_loss=sw["iou_loss"])
    return model


def model_spec(config: DetectorConfig, classes: list[str]) -> dict:
    """What rebuilds the network: the model name, its switches and the types."""
    return {"name": config.model, **config.switches(), "classes": list(classes),
            "backbone": "efficientnet-lite0"}
