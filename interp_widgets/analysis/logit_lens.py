"""The logit lens: what the residual stream "predicts" after each layer.

The residual at ``resid_post.L`` goes through the model's own final norm and unembedding, as if
the remaining layers were skipped (nostalgebraist, 2020). One trace reads every layer.

    >>> lens = iw.logit_lens(model, "The Eiffel Tower is in the city of")
    >>> lens.top_tokens[-1][-1][0]          # last layer, last position, top-1 token
    ' Paris'
    >>> lens.to_pandas().head()             # long format: layer, position, rank, token, prob
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import PromptError, SiteError
from ..models import Model, Site


@dataclass(frozen=True, repr=False)
class LogitLensResult:
    """Top-k next-token predictions read off each layer's residual stream.

    Arrays are numpy: ``top_ids`` / ``top_probs`` ``[n_layers, n_pos, k]``;
    ``final_prob`` ``[n_layers, n_pos]`` is the probability each layer gives to the token the
    full model ranks first at that position (how early the final answer emerges).
    """

    prompt: str
    model_name: str
    tokens: list[str]
    layers: list[int]
    top_ids: np.ndarray
    top_probs: np.ndarray
    top_tokens: list[list[list[str]]]
    final_ids: np.ndarray
    final_prob: np.ndarray
    site: str = "resid_post"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(self.top_ids.shape[-1])

    def to_pandas(self) -> Any:
        """Long format: one row per (layer, position, rank)."""
        import pandas as pd

        n_layers, n_pos, k = self.top_ids.shape
        layer = np.repeat(np.asarray(self.layers), n_pos * k)
        pos = np.tile(np.repeat(np.arange(n_pos), k), n_layers)
        rank = np.tile(np.arange(k), n_layers * n_pos)
        return pd.DataFrame({
            "layer": layer,
            "position": pos,
            "input_token": [self.tokens[p] for p in pos],
            "rank": rank,
            "token_id": self.top_ids.reshape(-1),
            "token": [t for lay in self.top_tokens for row in lay for t in row],
            "prob": self.top_probs.reshape(-1),
        })

    def figure(self) -> Any:
        """A plotly heatmap: layers up, positions across, top-1 token written in each cell."""
        import plotly.graph_objects as go

        text = [[row[0] for row in lay] for lay in self.top_tokens]
        fig = go.Figure(go.Heatmap(
            z=self.top_probs[:, :, 0], x=list(range(len(self.tokens))), y=self.layers,
            text=text, texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1,
            colorbar={"title": "p(top-1)"},
            hovertemplate="layer %{y}, pos %{x}<br>top-1 %{text}: %{z:.3f}<extra></extra>",
        ))
        fig.update_layout(
            title=f"Logit lens: {self.model_name}",
            xaxis={"tickmode": "array", "tickvals": list(range(len(self.tokens))),
                   "ticktext": self.tokens, "title": "input token"},
            yaxis={"title": "layer"},
        )
        return fig

    def __repr__(self) -> str:
        last = self.top_tokens[-1][-1][0] if self.top_tokens else ""
        return (f"LogitLensResult({self.model_name}, {len(self.tokens)} tokens x "
                f"{len(self.layers)} layers, k={self.k}, final top-1 {last!r})")


def logit_lens(
    model: Model,
    prompt: str,
    *,
    k: int = 5,
    layers: Sequence[int] | None = None,
    site: str = "resid_post",
) -> LogitLensResult:
    """Decode the residual stream after each layer with the model's final norm and unembedding.

        >>> lens = logit_lens(model, "2 + 3 =", k=3)
        >>> lens.top_probs.shape       # [n_layers, n_pos, 3]
        >>> lens.figure().show()
    """
    if not isinstance(prompt, str):
        raise PromptError(f"the logit lens takes one prompt string, got {type(prompt).__name__}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(100, model.d_vocab):
        raise PromptError(f"k must be an int in 1-{min(100, model.d_vocab)}, got {k!r}")
    if site not in ("resid_pre", "resid_mid", "resid_post"):
        raise SiteError(f"the logit lens reads a residual site; got {site!r}: use 'resid_post', "
                        f"'resid_mid' or 'resid_pre'")
    wanted = list(range(model.n_layers)) if layers is None else [int(x) for x in layers]
    sites = sorted({model.site(Site(site, L)) for L in wanted}, key=lambda s: s.order_key)
    toks = model.tokenize(prompt)
    saved: dict[int, Any] = {}
    with torch.no_grad():
        with model.trace(toks.as_dict()):
            for s in sites:
                saved[int(s.layer or 0)] = model.read(s).save()
            logits = model.read(Site("logits")).save()
    final_norm = model.hf.get_submodule(model.spec.final_norm)
    unembed = model.module(Site("logits"))
    softcap = getattr(model.config, "final_logit_softcapping", None)
    layer_ids = [int(s.layer or 0) for s in sites]
    with torch.no_grad():
        resid = torch.stack([getattr(saved[L], "value", saved[L])[0] for L in layer_ids])  # [L, pos, d]
        lens_logits = unembed(final_norm(resid)).float()
        if softcap:  # Gemma-2 squashes its logits; do the same so the last layer matches
            lens_logits = torch.tanh(lens_logits / softcap) * softcap
        probs = lens_logits.softmax(-1)
        top_p, top_i = probs.topk(k, dim=-1)
        final_ids = getattr(logits, "value", logits)[0].float().argmax(-1)  # [pos]
        final_prob = probs.gather(-1, final_ids.view(1, -1, 1).expand(len(layer_ids), -1, 1))[..., 0]
    decode = model.tokenizer.decode
    cache: dict[int, str] = {}

    def tok(i: int) -> str:
        if i not in cache:
            cache[i] = decode([i])
        return cache[i]

    ids_np = top_i.numpy().astype(np.int64)
    top_tokens = [[[tok(int(i)) for i in row] for row in lay] for lay in ids_np]
    return LogitLensResult(
        prompt=prompt,
        model_name=model.name,
        tokens=[tok(int(i)) for i in toks.input_ids[0].tolist()],
        layers=layer_ids,
        top_ids=ids_np,
        top_probs=top_p.numpy().astype(np.float32),
        top_tokens=top_tokens,
        final_ids=final_ids.numpy().astype(np.int64),
        final_prob=final_prob.numpy().astype(np.float32),
        site=site,
    )
