"""Training precision: plain fp32, or bfloat16 autocast, and what ``auto`` picks.

    precision = resolve_precision("auto", "cpu", "mnist_cnn")   # "bf16" or "fp32"
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        output = model(x)
    loss = criterion(output.float(), y)                          # the loss in fp32

"bf16" means ``torch.autocast(device_type, dtype=torch.bfloat16)`` around the forward
pass: parameters, gradients and optimizer state stay fp32, and autocast runs the ops on
its lower-precision list (convolutions, linear layers, matmuls) in bf16 while keeping
the ones on its fp32 list in fp32. No gradient scaler is needed (bf16 has fp32's
exponent range). Sources: PyTorch's AMP docs, "Automatic Mixed Precision package -
torch.amp", sections "CPU Ops that can autocast to bfloat16" and "CPU Ops that can
autocast to float32" (https://pytorch.org/docs/stable/amp.html), and the CPU example in
``torch.autocast``'s docstring (https://pytorch.org/docs/stable/amp.html#torch.autocast).

fp16 is never chosen: on the CPU autocast's fp16 path has no fast kernels on the
processors imori meets, and on CUDA it needs a gradient scaler that imori's loop does not
run; a GPU without bf16 trains in fp32.
"""

from __future__ import annotations

import functools

import torch

from core.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")

# Models whose training step on the CPU runs measurably faster under bf16 autocast:
# median ratio to fp32 >= 1.1 in the faster layout, which was channels-last for every
# one of them (model and input in torch.channels_last; without it lenet5 and tiny_net
# are SLOWER than fp32 in bf16, so bf16 here means bf16 + channels-last). Measured
# 2026-12-01 on the 2-core AMD EPYC (avx512_bf16, avx512_vnni), torch 2.14.1, 2 threads,
# random data, one process, 6 interleaved rounds, median (min..max) of per-round ratios:
#     .venv/bin/python bench/precision.py       (192 s; load 0.98 before, 1.95 after = itself)
#   model               input, batch   fp32 img/s  bf16 / fp32        bf16+cl / fp32
#   mynet               3x64x64, 32        104     1.91 (1.83..1.95)  2.33 (2.30..2.56)
#   mnist_cnn           1x28x28, 100      5438     1.16 (1.06..1.19)  1.99 (1.49..2.09)
#   lenet5              1x32x32, 64      13906     0.85 (0.80..0.88)  1.16 (1.07..1.22)
#   tiny_net            1x32x32, 64      21756     0.73 (0.66..0.83)  1.12 (1.02..1.35)
#   resnet18            3x224x224, 32       14     1.92 (1.77..2.14)  2.39 (2.28..2.60)
#   mobilenet_v3_small  3x224x224, 32       74     1.08 (1.01..1.10)  1.08 (0.98..1.13)  <- out
#   efficientnet_lite0  3x224x224, 32        9     1.83 (1.58..2.33)  2.28 (1.58..2.63)
# A second run of the three closest, `--models lenet5 tiny_net mobilenet_v3_small`:
#   bf16+cl / fp32 1.72, 1.45 and 0.96. vgg16 (skipped by default: 20-25 s per fp32 step
#   at 224 px), `--models vgg16 --size 112`: bf16 2.14, bf16+cl 2.42 (1.95..3.05).
# tiny_net and lenet5 gain the least, and their steps are 3-5 ms, where the loop's own
# per-step work dilutes the gain; mobilenet_v3_small (depthwise convs) gains nothing.
#
# Speed is not enough: a recipe must reach within 0.5 points of its fp32 figure
# (bench/recipes.py, 2026-12-01). seed 003 (mnist_cnn) did: 96.38 % both ways. seed 000
# (mynet, the tutorial's 100 iterations) did not: 92.0 % in bf16 against 99.6 % in fp32
# (its 300-iteration variant reached 100 % in bf16, so bf16 changes the early trajectory
# rather than the end point), and seed 004's tuned variant (lenet5) lost 0.56 points.
# So mynet, lenet5 and tiny_net (untested by a recipe, and the smallest gain) keep fp32
# under auto; --precision bf16 still asks for the fast path explicitly.
CPU_BF16_MODELS: frozenset[str] = frozenset({"mnist_cnn", "resnet18", "efficientnet_lite0", "vgg16"})

# How much faster a training step of these models runs in bf16 + channels-last than in
# fp32 on a CPU with native bf16: the medians of the table above (vgg16 at 112 px). What
# an estimate of a run's time divides by where ``resolve_precision`` gives bf16, never
# where it gives fp32 (a CPU without native bf16 trains at fp32's speed).
CPU_BF16_SPEEDUP: dict[str, float] = {"mnist_cnn": 1.99, "resnet18": 2.39, "efficientnet_lite0": 2.28, "vgg16": 2.42}


def speedup(precision: str, device_type: str, model_name: str) -> float:
    """How many times faster than fp32 a training step of ``model_name`` runs in
    ``precision`` (a resolved one: ``"fp32"`` or ``"bf16"``) on ``device_type``: 1.0 for
    fp32, for CUDA (not measured) and for a model not measured on the CPU."""
    if precision != "bf16" or str(device_type).split(":", 1)[0] != "cpu":
        return 1.0
    return CPU_BF16_SPEEDUP.get(model_name, 1.0)


@functools.lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """Whether this processor computes in bf16 natively, as torch and oneDNN report it.

    True when both hold:

    - oneDNN is built in and says it runs bf16 here:
      ``torch.backends.mkldnn.is_available()`` and
      ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` (the check torch's own tests use,
      ``torch/testing/_internal/common_mkldnn.py`` and ``common_quantization.py``;
      ``torch._inductor`` uses it too). On x86 that check is oneDNN's
      ``has_bf16_type_support()``, which is also true on AVX-512 processors without bf16
      instructions (Skylake-X, Cascade Lake), where oneDNN *emulates* bf16 at a fraction
      of fp32's speed; hence the second condition.
    - on x86, torch's CPU feature report (``torch.cpu.get_capabilities()``, from the
      cpuinfo library torch links) lists ``avx512_bf16`` or ``amx_bf16``: bf16 dot
      products in hardware. On other architectures oneDNN's answer already means native
      bf16 (on aarch64 it is cpuinfo's ``bf16`` feature).

    Read once per process and cached. Never raises: a torch without these functions,
    or any error from them, answers False (fp32 is always safe).
    """
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        if not bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return False
        capabilities = torch.cpu.get_capabilities()
        if capabilities.get("architecture", "") in ("x86_64", "x86", "i386", "i686", "AMD64"):
            return bool(capabilities.get("avx512_bf16", False) or capabilities.get("amx_bf16", False))
        return True
    except Exception:  # noqa: BLE001 - detection must never break a run
        return False


def _cuda_supports_bf16(including_emulation: bool) -> bool:
    try:
        return bool(torch.cuda.is_available()) and bool(
            torch.cuda.is_bf16_supported(including_emulation=including_emulation)
        )
    except Exception:  # noqa: BLE001
        return False


def resolve_precision(requested: str, device_type: str, model_name: str) -> str:
    """The precision a run trains in: ``"fp32"`` or ``"bf16"``.

    ``requested`` is ``"auto"``, ``"fp32"`` or ``"bf16"``; ``device_type`` is ``"cpu"`` or
    ``"cuda"`` (a device string such as ``"cuda:0"`` or a ``torch.device`` also works);
    ``model_name`` is a registry name (only looked up in ``CPU_BF16_MODELS``).

    - ``"fp32"``: always ``"fp32"``.
    - ``"bf16"``: ``"bf16"`` where the device has it; on a CPU without native bf16
      (``cpu_supports_bf16()`` false) or a CUDA GPU without bf16 -> ``ConfigError``.
    - ``"auto"``: on CUDA ``"bf16"`` when the GPU has bf16 in hardware
      (``torch.cuda.is_bf16_supported(including_emulation=False)``, Ampere and later),
      else ``"fp32"`` (never fp16); on the CPU ``"bf16"`` only when the processor has
      native bf16 *and* ``model_name`` is in ``CPU_BF16_MODELS`` (measured to train
      at least 1.1x faster that way), else ``"fp32"``.

    An unknown ``requested`` or ``device_type`` -> ``ConfigError``.
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"precision must be auto, fp32 or bf16, not {requested!r}")
    device = str(getattr(device_type, "type", device_type)).split(":", 1)[0]
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu or cuda, not {device_type!r}")
    if requested == "fp32":
        return "fp32"
    if device == "cuda":
        if requested == "bf16":
            if not _cuda_supports_bf16(including_emulation=True):
                raise ConfigError(
                    "bf16 precision was asked for, but this GPU does not support bfloat16; "
                    "use --precision fp32 or --precision auto"
                )
            return "bf16"
        return "bf16" if _cuda_supports_bf16(including_emulation=False) else "fp32"
    if requested == "bf16":
        if not cpu_supports_bf16():
            raise ConfigError(
                "bf16 precision was asked for, but this processor lacks bfloat16 support "
                "(torch/oneDNN report no native bf16 instructions such as AVX512-BF16 or "
                "AMX-BF16); use --precision fp32 or --precision auto"
            )
        return "bf16"
    return "bf16" if model_name in CPU_BF16_MODELS and cpu_supports_bf16() else "fp32"
