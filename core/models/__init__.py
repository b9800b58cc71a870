"""imori's models: the tutorials' networks, torchvision and timm fine-tuning, behind one registry.

    spec = get_spec("mynet")                      # input size, channels, output, recipe defaults
    model = build_model("mynet", num_classes=2)  # a fresh nn.Module
    groups = param_groups(model, "mynet", lr=0.01)
    print(summarize(model).as_text())
    ok, where = pretrained_available("efficientnet_lite0")  # ImageNet weights here?
"""

from core.models.registry import (
    MODELS,
    ModelSpec,
    build_model,
    get_spec,
    list_models,
    load_init_weights,
    param_groups,
    set_backbone_frozen,
    smallest_batchnorm_input,
    pretrained_available,
    set_train_mode,
)
from core.models.summary import ModelSummary, ParamRow, summarize, unwrap_model

__all__ = [
    "MODELS",
    "ModelSpec",
    "ModelSummary",
    "ParamRow",
    "build_model",
    "get_spec",
    "list_models",
    "load_init_weights",
    "param_groups",
    "set_backbone_frozen",
    "smallest_batchnorm_input",
    "pretrained_available",
    "set_train_mode",
    "summarize",
    "unwrap_model",
]
