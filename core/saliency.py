"""Why the model said what it said: class activation maps through the well-kept
``pytorch-grad-cam`` package (``grad-cam`` on PyPI), never hooks of our own.

The default method is HiResCAM (Draelos and Carin, "Use HiResCAM instead of Grad-CAM for
faithful explanations of convolutional neural networks", 2020): Grad-CAM (Selvaraju et
al. 2017) averages each channel's gradient over the map before weighting the
activations, which can move the map off what the model looked at; HiResCAM multiplies
gradients and activations element by element, which for a network that ends in
global pooling and a linear head is exactly what the class score sums. Measured on
``shapes`` (bench/RESULTS.md): its peak falls inside the shape for 92 % of test images,
Grad-CAM's for 72 %. ``METHODS`` lists the others the package offers.

Each registered model names the layer the map reads (``ModelSpec.cam_layer``: its last
convolutional block at stride 16 or so), so the user never has to. A map is computed on
demand, beside a prediction, so a plain prediction stays as fast as before; the CAM
object is used as a context manager, so its hooks are gone when the call returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import ImoriError
from core.models.specs import get_spec

if TYPE_CHECKING:  # imported when a map is made: the CLI reads METHODS without torch
    import numpy as np
    import torch

# name -> pytorch_grad_cam class name: the maps a user may ask for (`imori explain --method`).
METHODS = {"hirescam": "HiResCAM", "gradcam": "GradCAM", "layercam": "LayerCAM",
           "gradcam_elementwise": "GradCAMElementWise"}
DEFAULT_METHOD = "hirescam"


@dataclass
class Saliency:
    """A class's activation map for one image: ``heatmap`` is ``H x W`` floats in [0, 1] at
    the model's input size; ``overlay`` the model's view of the image with the map on it
    (a Pillow image); ``target`` the class explained, ``probability`` the model's for it."""

    target: str
    probability: float
    heatmap: np.ndarray
    overlay: Any

    def peak(self) -> tuple[int, int]:
        """(row, column) of the map's maximum, in input pixels."""
        import numpy as np

        row, col = np.unravel_index(int(self.heatmap.argmax()), self.heatmap.shape)
        return int(row), int(col)


def cam_layer(model: torch.nn.Module, model_name: str) -> torch.nn.Module:
    """The layer the class activation map reads for ``model_name``'s architecture."""
    path = get_spec(model_name).cam_layer
    if not path:
        raise ImoriError(f"{model_name} names no layer for Grad-CAM")
    return getattr(model, "_orig_mod", model).get_submodule(path)


def explain(predictor: Any, image: Any, target: str | int | None = None, method: str = DEFAULT_METHOD) -> Saliency:
    """The class activation map (``method``, one of ``METHODS``; HiResCAM by default) of
    ``predictor``'s model (a ``core.predict.Predictor``) on ``image`` (a Pillow image,
    bytes or a path) for ``target`` (a class name or index; default: the predicted class).
    Raises ImoriError for an unreadable image, an unknown class or method."""
    import numpy as np
    import pytorch_grad_cam
    import torch
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from PIL import Image

    # imori's modules that load torch, here for the same reason as torch itself.
    from core.data.images import open_image
    from core.predict import to_picture

    prep = predictor.preprocessing
    picture = image if hasattr(image, "mode") else open_image(image, fit=prep.size)
    batch = predictor.model_input(picture).to(predictor.device)
    with torch.inference_mode():
        probs = predictor.probabilities(batch)[0]
    if target is None:
        index = int(probs.argmax())
    elif isinstance(target, int):
        index = target
    elif target in predictor.classes:
        index = predictor.classes.index(target)
    else:
        raise ImoriError(f"no class {target!r} (the classes: {', '.join(predictor.classes)})")
    if not 0 <= index < len(predictor.classes):
        raise ImoriError(f"no class {index} (0 to {len(predictor.classes) - 1})")
    if method not in METHODS:
        raise ImoriError(f"no saliency method {method!r} (the methods: {', '.join(METHODS)})")
    model = predictor.model
    layer = cam_layer(model, predictor.checkpoint.model_name)
    cam_class = getattr(pytorch_grad_cam, METHODS[method])
    with torch.enable_grad(), cam_class(model=model, target_layers=[layer]) as cam:
        heatmap = cam(input_tensor=batch.clone(), targets=[ClassifierOutputTarget(index)])[0]
    seen = to_picture(prep, batch[0].cpu())  # uint8 C x H x W, as the model saw it
    rgb = seen.permute(1, 2, 0).numpy().astype(np.float32) / 255.0
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    overlay = Image.fromarray(show_cam_on_image(rgb, heatmap, use_rgb=True, image_weight=0.55))
    return Saliency(predictor.classes[index], float(probs[index]), heatmap.astype(np.float32), overlay)


def hook_count(model: torch.nn.Module) -> int:
    """Forward and backward hooks left on ``model``'s modules (0 after ``explain``)."""
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(getattr(m, "_forward_pre_hooks", {}))
               + len(getattr(m, "_full_backward_hooks", {}) or {}) for m in model.modules())
