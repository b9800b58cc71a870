"""core.precision: bf16 detection and what each --precision resolves to."""

from __future__ import annotations

import pytest

from core import precision
from core.errors import ConfigError
from core.precision import CPU_BF16_MODELS, cpu_supports_bf16, resolve_precision

IN_SET = "some_model_in_the_set"
OUT_OF_SET = "some_model_not_in_the_set"


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Set whether the CPU 'has' bf16, and put one model in the fast-path set."""

    def set_support(supported: bool) -> None:
        monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: supported)

    monkeypatch.setattr(precision, "CPU_BF16_MODELS", frozenset({IN_SET}))
    return set_support


def test_cpu_supports_bf16_is_a_bool_and_cached():
    first = cpu_supports_bf16()
    assert isinstance(first, bool)
    assert cpu_supports_bf16() is first
    assert cpu_supports_bf16.cache_info().hits >= 1


def test_cpu_supports_bf16_never_raises(monkeypatch):
    def broken():
        raise RuntimeError("no oneDNN here")

    monkeypatch.setattr(precision.torch.backends.mkldnn, "is_available", broken)
    precision.cpu_supports_bf16.cache_clear()
    try:
        assert precision.cpu_supports_bf16() is False
    finally:
        precision.cpu_supports_bf16.cache_clear()


def test_cpu_supports_bf16_needs_native_bf16_on_x86(monkeypatch):
    # oneDNN runs bf16 (emulated) on any AVX-512 CPU; only avx512_bf16 / amx_bf16 count.
    monkeypatch.setattr(precision.torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(precision.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    for caps, expected in (
        ({"architecture": "x86_64", "avx512_bf16": False, "amx_bf16": False}, False),
        ({"architecture": "x86_64", "avx512_bf16": True, "amx_bf16": False}, True),
        ({"architecture": "x86_64", "avx512_bf16": False, "amx_bf16": True}, True),
        ({"architecture": "aarch64"}, True),
    ):
        monkeypatch.setattr(precision.torch.cpu, "get_capabilities", lambda caps=caps: caps)
        precision.cpu_supports_bf16.cache_clear()
        try:
            assert precision.cpu_supports_bf16() is expected, caps
        finally:
            precision.cpu_supports_bf16.cache_clear()


@pytest.mark.parametrize("supported", [True, False])
def test_fp32_is_always_fp32(bf16_cpu, supported):
    bf16_cpu(supported)
    assert resolve_precision("fp32", "cpu", IN_SET) == "fp32"
    assert resolve_precision("fp32", "cpu", OUT_OF_SET) == "fp32"


def test_bf16_on_a_cpu_with_bf16(bf16_cpu):
    bf16_cpu(True)
    assert resolve_precision("bf16", "cpu", IN_SET) == "bf16"
    assert resolve_precision("bf16", "cpu", OUT_OF_SET) == "bf16"  # asked for: the set is auto's


def test_bf16_on_a_cpu_without_bf16_says_what_to_do(bf16_cpu):
    bf16_cpu(False)
    with pytest.raises(ConfigError) as err:
        resolve_precision("bf16", "cpu", IN_SET)
    message = str(err.value)
    assert "processor lacks bfloat16" in message
    assert "--precision fp32" in message and "auto" in message


def test_auto_on_cpu(bf16_cpu):
    bf16_cpu(True)
    assert resolve_precision("auto", "cpu", IN_SET) == "bf16"
    assert resolve_precision("auto", "cpu", OUT_OF_SET) == "fp32"
    bf16_cpu(False)
    assert resolve_precision("auto", "cpu", IN_SET) == "fp32"
    assert resolve_precision("auto", "cpu", OUT_OF_SET) == "fp32"


def test_auto_on_cpu_follows_the_measured_set(monkeypatch):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    for name in CPU_BF16_MODELS:
        assert resolve_precision("auto", "cpu", name) == "bf16"
    assert resolve_precision("auto", "cpu", "vgg16") == ("bf16" if "vgg16" in CPU_BF16_MODELS else "fp32")


@pytest.mark.parametrize(
    "bf16_native, bf16_emulated, auto, asked",
    [(True, True, "bf16", "bf16"), (False, True, "fp32", "bf16"), (False, False, "fp32", None)],
)
def test_cuda(monkeypatch, bf16_native, bf16_emulated, auto, asked):
    monkeypatch.setattr(
        precision, "_cuda_supports_bf16", lambda including_emulation: bf16_emulated if including_emulation else bf16_native
    )
    assert resolve_precision("auto", "cuda", OUT_OF_SET) == auto  # never fp16
    assert resolve_precision("auto", "cuda:0", OUT_OF_SET) == auto
    assert resolve_precision("fp32", "cuda", OUT_OF_SET) == "fp32"
    if asked:
        assert resolve_precision("bf16", "cuda", OUT_OF_SET) == asked
    else:
        with pytest.raises(ConfigError, match="--precision fp32"):
            resolve_precision("bf16", "cuda", OUT_OF_SET)


@pytest.mark.parametrize("requested, device", [("fp16", "cpu"), ("BF16", "cpu"), ("", "cpu"), ("auto", "mps")])
def test_unknown_values_are_config_errors(requested, device):
    with pytest.raises(ConfigError):
        resolve_precision(requested, device, "mnist_cnn")
