"""State-dict key helpers: what PyTorch's wrappers add to a model's keys, taken off again.

A leaf of ``core.models``: the checkpoint format and the model builders both read weights
through it, so neither imports the other for it.
"""

from __future__ import annotations

from typing import Any

from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def strip_wrapper_prefixes(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A state_dict without the key prefixes that PyTorch's own wrappers add, nested ones
    too: ``module.`` (DataParallel, DistributedDataParallel, swa_utils.AveragedModel),
    ``_orig_mod.`` (torch.compile), ``_fsdp_wrapped_module.`` (FSDP) and
    ``_checkpoint_wrapped_module.`` (activation checkpointing). A prefix is removed only
    when every key carries it, with PyTorch's ``consume_prefix_in_state_dict_if_present``."""
    state = dict(state_dict)
    state.pop("n_averaged", None)  # AveragedModel's counter, not a weight
    changed = True
    while changed and state:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state):
                consume_prefix_in_state_dict_if_present(state, prefix)
                changed = True
    return state
