"""The frozen linear model of one prompt: attention patterns and norm scales fixed at their values.

One real nnsight trace records the residual stream, the MLP inputs/outputs and the logits; from
those and the weights we build a pure-torch *affine* map from the residual-stream write vectors
(embeddings, MLP outputs) to every MLP input and the final residual. Its transpose, applied to a
batch of gradients at once, is what :mod:`.engine` uses to compute edges.

    >>> lin, real = capture(model, input_ids)            # one trace of the real model
    >>> mlp_in, final = lin.forward(real.resid_pre[0], real.mlp_out)
    >>> torch.allclose(mlp_in, real.mlp_in, atol=1e-4)   # reproduces the model
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ...errors import GraphError

#: Families whose frozen linear forward we re-implement from the weights.
SUPPORTED_FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gpt2")


@dataclass
class RealRun:
    """What one real trace of the prompt recorded (batch dim removed, float32 on CPU).

    ``resid_pre``/``resid_mid``/``mlp_in``/``mlp_out``: ``[n_layers, pos, d_model]``;
    ``final``: the last block's output ``[pos, d_model]``; ``logits``: ``[pos, vocab]``.
    """

    input_ids: Tensor
    resid_pre: Tensor
    resid_mid: Tensor
    mlp_in: Tensor
    mlp_out: Tensor
    final: Tensor
    logits: Tensor


def _get(root: Any, path: str) -> Any:
    obj = root
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def check_family(model: Any) -> None:
    if model.family not in SUPPORTED_FAMILIES:
        raise GraphError(
            f"attribution graphs are not implemented for the {model.family!r} family yet "
            f"({model.name}); supported families: {', '.join(SUPPORTED_FAMILIES)}"
        )


def run_real(model: Any, input_ids: Tensor) -> RealRun:
    """One nnsight trace of the real model saving every tensor the frozen model needs."""
    from ...models import Site

    ids = input_ids.reshape(1, -1)
    n = model.n_layers
    saved: dict[str, Any] = {}
    with torch.no_grad():
        with model.trace({"input_ids": ids, "attention_mask": torch.ones_like(ids)}):
            # sites in forward order (nnsight requires it)
            for layer in range(n):
                for name in ("resid_pre", "resid_mid", "mlp_in", "mlp_out"):
                    saved[f"{name}.{layer}"] = model.read(f"{name}.{layer}").save()
            saved["final"] = model.read(f"resid_post.{n - 1}").save()
            saved["logits"] = model.read(Site("logits")).save()

    def val(key: str) -> Tensor:
        v = saved[key]
        v = getattr(v, "value", v)
        return v.detach()[0].float()

    stack = {name: torch.stack([val(f"{name}.{layer}") for layer in range(n)])
             for name in ("resid_pre", "resid_mid", "mlp_in", "mlp_out")}
    return RealRun(input_ids=ids[0].clone(), final=val("final"), logits=val("logits"), **stack)


@dataclass
class Norm:
    """A norm with its scale frozen per position: ``y = (x [- mean x]) * scale[p] * w (+ b)``."""

    weight: Tensor  # [d]
    bias: Tensor | None  # [d]
    scale: Tensor  # [pos]
    center: bool  # LayerNorm subtracts the mean (linear), RMSNorm does not

    def forward(self, x: Tensor, bias: bool) -> Tensor:
        if self.center:
            x = x - x.mean(-1, keepdim=True)
        y = x * self.scale[: x.shape[-2], None] * self.weight
        if bias and self.bias is not None:
            y = y + self.bias
        return y

    def transpose(self, g: Tensor) -> Tensor:
        """Vector-Jacobian product: ``g`` at the output -> gradient at the input (``[..., p, d]``)."""
        c = g * self.scale[: g.shape[-2], None] * self.weight
        if self.center:
            c = c - c.mean(-1, keepdim=True)
        return c

    def transpose_at(self, g: Tensor, pos: Tensor) -> Tensor:
        """Like :meth:`transpose` for single vectors ``g [k, d]`` at positions ``pos [k]``."""
        c = g * self.scale[pos, None] * self.weight
        if self.center:
            c = c - c.mean(-1, keepdim=True)
        return c


@dataclass
class Attention:
    """Attention with a frozen pattern: ``out = O(pattern @ V(x))`` (linear in ``x``)."""

    W_V: Tensor  # [n_kv * hd, d]   (torch Linear layout: out x in)
    b_V: Tensor | None
    W_O: Tensor  # [d, n_heads * hd]
    b_O: Tensor | None
    pattern: Tensor  # [n_heads, pos, pos] (row = query, column = key)
    n_heads: int
    n_kv: int
    head_dim: int

    def forward(self, x: Tensor, bias: bool) -> Tensor:
        p = x.shape[-2]
        v = x @ self.W_V.T
        if bias and self.b_V is not None:
            v = v + self.b_V
        v = v.reshape(p, self.n_kv, 1, self.head_dim)
        g = self.n_heads // self.n_kv
        pat = self.pattern[:, :p, :p].reshape(self.n_kv, g, p, p)
        z = torch.einsum("kgqs,skgd->qkgd", pat, v.expand(p, self.n_kv, g, self.head_dim))
        out = z.reshape(p, -1) @ self.W_O.T
        if bias and self.b_O is not None:
            out = out + self.b_O
        return out

    def transpose(self, g_out: Tensor) -> Tensor:
        """``[n, p, d]`` gradient at the attention output -> gradient at its (normed) input."""
        n, p, _ = g_out.shape
        grp = self.n_heads // self.n_kv
        gz = (g_out @ self.W_O).reshape(n, p, self.n_kv, grp, self.head_dim)
        pat = self.pattern[:, :p, :p].reshape(self.n_kv, grp, p, p)
        # gv[n, s, k, d] = sum_{q, g} pattern[k, g, q, s] * gz[n, q, k, g, d]
        gv = torch.einsum("kgqs,nqkgd->nskd", pat, gz)
        return gv.reshape(n, p, -1) @ self.W_V


@dataclass
class FrozenLinearModel:
    """The prompt's frozen model as an affine map of the residual-stream writes.

    ``forward(embed, mlp_out)`` runs it; ``skip[L]`` (``[d, d]`` or ``None``) adds a linear
    path ``mlp_in @ skip`` to each MLP output (a transcoder's skip connection).
    """

    family: str
    n_layers: int
    d_model: int
    n_pos: int
    ln1: list[Norm]
    attn: list[Attention]
    ln2: list[Norm]
    ln_final: Norm
    W_U: Tensor  # [vocab, d]
    b_U: Tensor | None
    dtype: torch.dtype

    def forward(
        self,
        embed: Tensor,
        mlp_out: Tensor,
        *,
        skip: list[Tensor | None] | None = None,
        bias: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """``embed [pos, d]`` + per-layer MLP writes ``[n_layers, pos, d]`` -> ``(mlp_in, y_final)``.

        ``mlp_in`` is ``[n_layers, pos, d]`` (what each MLP reads) and ``y_final`` the final-norm
        output ``[pos, d]``. ``bias=False`` drops every constant term (norm / attention biases).
        """
        r = embed.to(self.dtype)
        mlp_ins = []
        for layer in range(self.n_layers):
            r = r + self.attn[layer].forward(self.ln1[layer].forward(r, bias), bias)
            x = self.ln2[layer].forward(r, bias)
            mlp_ins.append(x)
            out = mlp_out[layer].to(self.dtype)
            if skip is not None and skip[layer] is not None:
                out = out + x @ skip[layer]
            r = r + out
        return torch.stack(mlp_ins), self.ln_final.forward(r, bias)

    def logits(self, y_final: Tensor, bias: bool = True) -> Tensor:
        out = y_final @ self.W_U.T
        if bias and self.b_U is not None:
            out = out + self.b_U
        return out

    def to(self, dtype: torch.dtype, *, unembed: bool = True) -> FrozenLinearModel:
        """A copy in ``dtype`` (``unembed=False`` keeps the large unembedding as it is)."""

        def cv(x: Any) -> Any:
            if isinstance(x, Tensor):
                return x.to(dtype)
            if isinstance(x, (Norm, Attention)):
                return type(x)(**{k: cv(v) for k, v in x.__dict__.items()})
            return x

        return FrozenLinearModel(
            family=self.family, n_layers=self.n_layers, d_model=self.d_model, n_pos=self.n_pos,
            ln1=[cv(n) for n in self.ln1], attn=[cv(a) for a in self.attn],
            ln2=[cv(n) for n in self.ln2], ln_final=cv(self.ln_final),
            W_U=cv(self.W_U) if unembed else self.W_U, b_U=cv(self.b_U), dtype=dtype,
        )


def _rms_scale(x: Tensor, eps: float) -> Tensor:
    return torch.rsqrt(x.float().pow(2).mean(-1) + eps)


def _ln_scale(x: Tensor, eps: float) -> Tensor:
    return torch.rsqrt(x.float().var(-1, unbiased=False) + eps)


def _rms_norm(module: Any, x: Tensor, gemma: bool) -> Norm:
    eps = float(getattr(module, "variance_epsilon", getattr(module, "eps", 1e-6)))
    w = module.weight.detach().float()
    return Norm(weight=(1.0 + w) if gemma else w, bias=None, scale=_rms_scale(x, eps), center=False)


def _layer_norm(module: Any, x: Tensor) -> Norm:
    b = module.bias.detach().float() if module.bias is not None else None
    return Norm(weight=module.weight.detach().float(), bias=b, scale=_ln_scale(x, float(module.eps)),
                center=True)


def _causal_softmax(scores: Tensor, window: int | None = None) -> Tensor:
    """``scores [heads, q, k]`` -> pattern, masking future keys (and keys beyond a window)."""
    p = scores.shape[-1]
    i = torch.arange(p)
    allowed = i[None, :] <= i[:, None]
    if window is not None:
        allowed &= i[None, :] > i[:, None] - window
    scores = scores.float().masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1)


def _llama_patterns(model: Any, block: Any, x1: Tensor) -> Tensor:
    attn = block.self_attn
    p = x1.shape[0]
    hd = int(attn.head_dim)
    with torch.no_grad():
        q = attn.q_proj(x1[None]).view(1, p, -1, hd)
        k = attn.k_proj(x1[None]).view(1, p, -1, hd)
        if hasattr(attn, "q_norm"):  # qwen3 normalises q and k per head
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        pos_ids = torch.arange(p)[None]
        cos, sin = _get(model.hf, model.spec.layers.rsplit(".", 1)[0]).rotary_emb(x1[None], pos_ids)
        rope = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        q, k = rope(q, k, cos, sin)
        n_heads, n_kv = q.shape[1], k.shape[1]
        k = k.repeat_interleave(n_heads // n_kv, dim=1)
        scores = (q @ k.transpose(-1, -2))[0] * float(attn.scaling)
    window = None
    if model.family == "mistral":
        window = getattr(model.config, "sliding_window", None)
    return _causal_softmax(scores, window)


def _capture_llama(model: Any, real: RealRun) -> FrozenLinearModel:
    gemma = model.family == "gemma"
    ln1, attns, ln2 = [], [], []
    for layer in range(model.n_layers):
        block = _get(model.hf, f"{model.spec.layers}.{layer}")
        a = block.self_attn
        r = real.resid_pre[layer]
        with torch.no_grad():
            x1 = block.input_layernorm(r.to(block.input_layernorm.weight.dtype)).float()
        hd = int(a.head_dim)
        n_heads = a.q_proj.out_features // hd
        n_kv = a.v_proj.out_features // hd
        ln1.append(_rms_norm(block.input_layernorm, r, gemma))
        ln2.append(_rms_norm(block.post_attention_layernorm, real.resid_mid[layer], gemma))
        attns.append(Attention(
            W_V=a.v_proj.weight.detach().float(),
            b_V=a.v_proj.bias.detach().float() if a.v_proj.bias is not None else None,
            W_O=a.o_proj.weight.detach().float(),
            b_O=a.o_proj.bias.detach().float() if a.o_proj.bias is not None else None,
            pattern=_llama_patterns(model, block, x1),
            n_heads=n_heads, n_kv=n_kv, head_dim=hd,
        ))
    fnorm = _get(model.hf, model.spec.final_norm)
    return _finish(model, real, ln1, attns, ln2, _rms_norm(fnorm, real.final, gemma))


def _capture_gpt2(model: Any, real: RealRun) -> FrozenLinearModel:
    ln1, attns, ln2 = [], [], []
    d = model.d_model
    for layer in range(model.n_layers):
        block = _get(model.hf, f"{model.spec.layers}.{layer}")
        a = block.attn
        r = real.resid_pre[layer]
        p = r.shape[0]
        n_heads = int(a.num_heads)
        hd = d // n_heads
        with torch.no_grad():
            x1 = block.ln_1(r)
            q, k, _ = a.c_attn(x1).split(d, dim=-1)
            q = q.view(p, n_heads, hd).transpose(0, 1)
            k = k.view(p, n_heads, hd).transpose(0, 1)
            scores = (q @ k.transpose(-1, -2)) * float(a.scaling)
        W = a.c_attn.weight.detach().float()  # Conv1D: [in, out]
        b = a.c_attn.bias.detach().float()
        ln1.append(_layer_norm(block.ln_1, r))
        ln2.append(_layer_norm(block.ln_2, real.resid_mid[layer]))
        attns.append(Attention(
            W_V=W[:, 2 * d:].T.contiguous(), b_V=b[2 * d:].clone(),
            W_O=a.c_proj.weight.detach().float().T.contiguous(),
            b_O=a.c_proj.bias.detach().float().clone(),
            pattern=_causal_softmax(scores), n_heads=n_heads, n_kv=n_heads, head_dim=hd,
        ))
    fnorm = _get(model.hf, model.spec.final_norm)
    return _finish(model, real, ln1, attns, ln2, _layer_norm(fnorm, real.final))


def _finish(model: Any, real: RealRun, ln1: list, attns: list, ln2: list, lnf: Norm) -> FrozenLinearModel:
    unembed = _get(model.hf, model.spec.unembed)
    b_U = getattr(unembed, "bias", None)
    return FrozenLinearModel(
        family=model.family, n_layers=model.n_layers, d_model=model.d_model,
        n_pos=int(real.input_ids.shape[0]), ln1=ln1, attn=attns, ln2=ln2, ln_final=lnf,
        W_U=unembed.weight.detach().float(), b_U=b_U.detach().float() if b_U is not None else None,
        dtype=torch.float32,
    )


def capture(model: Any, input_ids: Tensor) -> tuple[FrozenLinearModel, RealRun]:
    """Trace the prompt once and freeze attention patterns and norm scales at its values."""
    check_family(model)
    real = run_real(model, input_ids)
    if model.family == "gpt2":
        return _capture_gpt2(model, real), real
    return _capture_llama(model, real), real
