"""Logit effects: the tokens a feature's direction most promotes / suppresses, directly.

The *direct* effect of writing a vector ``v`` into the residual stream on the logits, through
the final norm and the unembedding (later layers are not run):

    effect = W_U @ (gamma * P v)

- ``gamma`` is the final norm's scale (``weight`` for LayerNorm / RMSNorm, ``1 + weight`` for
  Gemma's RMSNorm);
- ``P`` removes the mean of ``v`` for LayerNorm models (gpt2, gpt_neox), as LayerNorm does;
- the norm's ``1 / rms(x)`` factor depends on the residual it is added to. It is a positive
  number shared by all tokens, so it is left out: it rescales every effect equally and does not
  change the ranking. Effects are therefore "logits per unit of activation, before the final
  norm's division" (multiply by ``1 / rms`` of a typical final residual for absolute logits).
  Biases (LayerNorm's beta, an unembedding bias) add the same amount with or without the
  feature and are left out too. Gemma-2's final logit soft-cap is monotonic and ignored.

    >>> iw.logit_effects(sae[123], model, k=5)
       direction  rank   token  token_id   effect
    0         up     1   Paris      7042    2.31
    ...
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import DictionaryError, FeatureError
from ..models.sites import Site


def _vector_of(item: Any, model: Any) -> tuple[Tensor, str, str]:
    """(vector [d_model], name, site) of a Feature, Direction, object with .direction, or tensor."""
    if isinstance(item, Tensor):
        vec, name, site = item, "vector", ""
    elif hasattr(item, "direction"):
        vec = item.direction
        name = str(getattr(item, "name", "feature"))
        site = str(getattr(item, "site", ""))
        d = getattr(item, "dictionary", None)
        norm = getattr(d, "out_norm", None)
        if norm is not None and hasattr(norm, "weight"):
            # Gemma-2 neuron: its row is pre-norm; the post-MLP norm scales it by (1 + w)
            vec = vec * (1.0 + norm.weight.detach())
    else:
        raise FeatureError(
            f"logit_effects needs a feature (dictionary[i]), a Direction or a [d_model] tensor; "
            f"got {type(item).__name__}"
        )
    vec = torch.as_tensor(vec).detach().float().reshape(-1)
    if vec.shape[0] != model.d_model:
        raise DictionaryError(
            f"{name} has {vec.shape[0]} dimensions but {model.name} has d_model={model.d_model}: "
            f"it belongs to another model"
        )
    if not bool(torch.isfinite(vec).all()):
        raise FeatureError(f"{name} has NaN or inf entries")
    return vec, name, site


def final_norm_map(model: Any) -> tuple[Tensor, bool]:
    """``(gamma [d_model], centers)`` of the model's final norm (see the module docstring)."""
    norm = model._module(model.spec.final_norm)
    cls = type(norm).__name__
    w = getattr(norm, "weight", None)
    d = model.d_model
    if isinstance(norm, torch.nn.LayerNorm) or cls.endswith("LayerNorm") and "RMS" not in cls:
        gamma = w.detach().float() if w is not None else torch.ones(d)
        return gamma, True
    if "RMSNorm" in cls:
        if w is None:
            return torch.ones(d), False
        gamma = w.detach().float()
        return (1.0 + gamma if cls.startswith("Gemma") else gamma), False
    raise DictionaryError(f"final norm {cls} of {model.name} is not a LayerNorm or RMSNorm")


def logit_effects(feature: Any, model: Any, k: int = 10) -> Any:
    """The ``k`` tokens a feature / direction most promotes and the ``k`` it most suppresses.

    Returns a pandas DataFrame with columns ``direction`` (``"up"`` / ``"down"``), ``rank``
    (1 = strongest), ``token``, ``token_id``, ``effect`` (up rows first). ``df.attrs`` holds the
    feature name, its site and the normalisation note.

        >>> df = iw.logit_effects(tset[12][77], model, k=8)
        >>> df[df.direction == "up"].token.tolist()
        >>> iw.logit_effects(iw.directions.from_contrast(model, pos, neg, "resid_post.12"), model)
    """
    import pandas as pd

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise FeatureError(f"k must be a positive int, got {k!r}")
    vec, name, site = _vector_of(feature, model)
    if site:
        s = Site.parse(site)
        if s.name == "logits":
            raise FeatureError(f"{name} lives at the logits already; logit effects need a residual-space vector")
    gamma, centers = final_norm_map(model)
    w_u = model.module(Site("logits")).weight.detach()
    v = vec - vec.mean() if centers else vec
    v = (v * gamma).to(device=w_u.device, dtype=w_u.dtype)
    with torch.no_grad():
        eff = (w_u @ v).float().cpu()
    k = min(k, eff.shape[0])
    up = eff.topk(k)
    down = (-eff).topk(k)
    ids = up.indices.tolist() + down.indices.tolist()
    tok = model.tokenizer
    df = pd.DataFrame({
        "direction": ["up"] * k + ["down"] * k,
        "rank": list(range(1, k + 1)) * 2,
        "token": tok.batch_decode([[i] for i in ids]),
        "token_id": ids,
        "effect": eff[ids].numpy(),
    })
    df.attrs.update({"feature": name, "site": site, "model": model.name,
                     "normalisation": "W_U @ (gamma * centred(v)); final norm 1/rms left out"})
    return df


__all__ = ["logit_effects", "final_norm_map"]
