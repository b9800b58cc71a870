"""imori's models: the tutorials' networks, torchvision and timm fine-tuning, behind one registry.

Import from the module that holds what you need; this package's own import loads nothing,
so the torch-free half stays torch-free:

    from core.models.specs import get_spec, pretrained_available   # no torch
    from core.models.registry import build_model, param_groups     # torch

    spec = get_spec("mynet")                      # input size, channels, output, recipe defaults
    ok, where = pretrained_available("efficientnet_lite0")  # ImageNet weights here?
    model = build_model("mynet", num_classes=2)  # a fresh nn.Module
    groups = param_groups(model, "mynet", lr=0.01)
"""
