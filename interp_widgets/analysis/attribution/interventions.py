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


def run_with_deltas(model: Any, input_ids: Tensor, deltas: dict[tuple[str, int], Tensor],
                    final_norm: Any = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(clean, patched, patched_frozen_norm)`` last-position logits ``[vocab]`` with
    ``deltas[(site, layer)]`` (``[pos, d]``) added at ``resid_pre.0`` / ``mlp_out.L``.

    ``final_norm`` (a frozen :class:`~.linear_model.Norm`): also run the patched model with the
    final norm's scale frozen at its clean value (None: skip that run). The final norm rescales
    every logit when a large write changes the residual's size; freezing it shows how much of a
    change is that global rescaling.
    """
    from ...models import Site

    ids = input_ids.reshape(1, -1)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    order = sorted(deltas, key=lambda k: Site(k[0], k[1]).order_key)
    runs = [False, True] + ([True] if final_norm is not None else [])
    out = []
    with torch.no_grad():
        for i, patch in enumerate(runs):
            with model.trace(inputs):
                if patch:
                    for name, layer in order:
                        site = f"{name}.{layer}"
                        x = model.read(site)
                        model.write(site, x + deltas[(name, layer)].to(x.dtype)[None])
                if i == 2:
                    env = model.envoy(model.spec.final_norm)
                    x = env.input
                    env.output = final_norm.forward(x[0].float(), True)[None].to(x.dtype)
                logits = model.read(Site("logits"))[0, -1].save()
            out.append(getattr(logits, "value", logits).detach().float())
    return out[0], out[1], (out[2] if len(out) > 2 else None)
