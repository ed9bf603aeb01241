"""Where and in which number format a model runs (``unblur.device``)."""

import pytest
import torch


def test_precision_auto_follows_the_cpu_and_forced_bf16_warns_where_it_is_slow(monkeypatch):
    """``auto`` is bf16 only on a CPU with native bf16; asking for bf16 on one without it works but says that it is
    slow there (PyTorch then falls back to its reference convolution); fp16 is refused on a CPU."""
    import warnings

    import unblur.device as device

    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)
    assert device.resolve_precision("auto", cpu) == torch.float32
    with pytest.warns(UserWarning, match="no native bf16"):
        assert device.resolve_precision("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    assert device.resolve_precision("auto", cpu) == torch.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert device.resolve_precision("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="fp16 is for CUDA"):
        device.resolve_precision("fp16", cpu)
