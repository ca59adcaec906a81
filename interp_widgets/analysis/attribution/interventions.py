"""Run the real model with some graph nodes scaled, through nnsight (one trace).

A feature node ``(layer, pos, f)`` with activation ``a`` scaled by ``s`` changes what that
layer's MLP writes at ``pos`` by ``(s - 1) * a * decoder[f]``; an error node by ``(s - 1) *
error``; an embedding by ``(s - 1) * embedding``. Everything downstream is the real model
(attention, norms and MLPs recomputed), so the result can be compared with the graph's linear
prediction.

    >>> deltas = {("mlp_out", 12): torch.zeros(P, d)}; deltas[("mlp_out", 12)][5] += v
    >>> before, after = run_with_deltas(model, input_ids, deltas)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def run_with_deltas(model: Any, input_ids: Tensor, deltas: dict[tuple[str, int], Tensor]) -> tuple[Tensor, Tensor]:
    """``(clean_last_logits [vocab], patched_last_logits [vocab])`` with ``deltas[(site, layer)]``
    (``[pos, d]``) added at ``resid_pre.0`` / ``mlp_out.L``."""
    from ...models import Site

    ids = input_ids.reshape(1, -1)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    order = sorted(deltas, key=lambda k: Site(k[0], k[1]).order_key)
    with torch.no_grad():
        with model.trace(inputs):
            clean = model.read(Site("logits"))[0, -1].save()
        with model.trace(inputs):
            for name, layer in order:
                site = f"{name}.{layer}"
                x = model.read(site)
                model.write(site, x + deltas[(name, layer)].to(x.dtype)[None])
            patched = model.read(Site("logits"))[0, -1].save()
    val = lambda v: getattr(v, "value", v).detach().float()  # noqa: E731
    return val(clean), val(patched)
