"""``Model``: a causal LM behind nnsight with a named site map.

    >>> model = iw.load_model("tiny-llama")
    >>> logits, cache = model.run_with_cache(["Hello world"], sites=["resid_post.1"])
    >>> cache["resid_post.1"].shape   # [batch, pos, d_model]
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError, PromptError, RemoteError, SiteError
from .sites import (
    GLOBAL_SITES,
    LAYER_SITES,
    FamilySpec,
    Site,
    check_site,
    family_spec,
    valid_site_names,
)

RemoteMode = bool | str


@dataclass
class Tokens:
    """A padded batch: ``input_ids`` / ``attention_mask`` ``[batch, pos]`` and lengths."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    lengths: list[int]
    padding_side: str

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}


class ActivationCache(Mapping[str, torch.Tensor]):
    """Activations by site name (``cache["resid_post.12"]`` -> ``[batch, pos, d]``)."""

    def __init__(self, data: dict[str, torch.Tensor], attention_mask: torch.Tensor):
        self._data = data
        self.attention_mask = attention_mask

    def __getitem__(self, key: str | Site) -> torch.Tensor:
        k = str(Site.parse(key)) if not isinstance(key, str) else key.replace(" ", "")
        if k not in self._data:
            raise SiteError(f"site {k!r} was not cached; cached sites: {', '.join(self._data)}")
        return self._data[k]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in list(self._data.items())[:6])
        more = "" if len(self._data) <= 6 else f", ... ({len(self._data)} sites)"
        return f"ActivationCache({shapes}{more})"


class Model:
    """A causal language model wrapped by nnsight, with named sites.

    Attributes: ``nn`` (the nnsight ``TransformersModel``), ``hf`` (the transformers module),
    ``tokenizer``, ``name``, ``n_layers``, ``d_model``, ``d_vocab``, ``n_ctx``, ``family``.
    """

    def __init__(
        self,
        hf_model: Any,
        tokenizer: Any,
        *,
        name: str,
        remote: RemoteMode = False,
        repo_id: str | None = None,
        nn: Any = None,
    ):
        from nnsight import TransformersModel

        self.hf = hf_model.eval()
        self.tokenizer = tokenizer
        if getattr(tokenizer, "pad_token", None) is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.name = name
        self.config = hf_model.config
        spec = family_spec(self.config)
        if not hasattr(hf_model, spec.unembed) and hasattr(hf_model, "embed_out"):
            spec = FamilySpec(**{**spec.__dict__, "unembed": "embed_out"})
        self.spec: FamilySpec = spec
        self.family = self.spec.family
        self.nn = nn if nn is not None else TransformersModel(hf_model, tokenizer=tokenizer)
        if repo_id is not None:
            # NDIF finds its copy of the model by this Hugging Face id, not by our local path.
            self.nn.repo_id = repo_id
        self.repo_id = repo_id
        self.remote: RemoteMode = remote
        self.n_layers = int(self._module(self.spec.layers).__len__())
        self.d_model = int(getattr(self.config, "hidden_size", None) or self.config.n_embd)
        self.d_vocab = int(self.config.vocab_size)
        n_ctx: Any = getattr(self.config, "max_position_embeddings", None)
        self.n_ctx = int(n_ctx or getattr(self.config, "n_positions", 2048))

    # ------------------------------------------------------------------ sites
    @property
    def site_names(self) -> list[str]:
        return valid_site_names(self.spec)

    def sites(self, names: Iterable[str] | None = None) -> list[Site]:
        """All sites (or those with the given names) at every layer, in forward order."""
        wanted = list(names) if names is not None else [n for n in LAYER_SITES if n in self.spec.accessors]
        out = [Site(n, layer) for layer in range(self.n_layers) for n in wanted if n not in GLOBAL_SITES]
        return sorted(out, key=lambda s: s.order_key)

    def site(self, spec: str | Site | tuple[str, int]) -> Site:
        """Validate a site for this model (``"resid_post.12"``), raising a helpful SiteError."""
        return check_site(spec, self.spec, self.n_layers, self.name)

    def _module(self, path: str) -> Any:
        obj = self.hf
        for part in path.split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        return obj

    def envoy(self, path: str) -> Any:
        """The nnsight Envoy at a dotted module path (``"model.layers.3.mlp"``)."""
        obj = self.nn
        for part in path.split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        return obj

    def module(self, site: str | Site) -> Any:
        """The torch module that carries a site (its output or input is the site's tensor).

        For ``logits`` this is the unembedding; the site itself is the model's final output,
        which differs from the unembedding's output where the model soft-caps (Gemma-2).
        """
        s = self.site(site)
        if s.name == "embed":
            return self._module(self.spec.embed)
        if s.name == "logits":
            return self._module(self.spec.unembed)
        acc = self.spec.accessors[s.name]
        return self._module(acc.path.format(L=s.layer))

    def _where(self, site: Site) -> tuple[Any, str]:
        if site.name == "embed":
            return self.envoy(self.spec.embed), "output"
        if site.name == "logits":
            # The model's own output, not lm_head's: Gemma-2 soft-caps logits after lm_head.
            return self.nn, "logits"
        acc = self.spec.accessors[site.name]
        return self.envoy(acc.path.format(L=site.layer)), acc.kind

    def read(self, site: str | Site) -> torch.Tensor:
        """Inside a trace: the tensor at ``site`` (``[batch, pos, d]``)."""
        env, kind = self._where(self.site(site))
        if kind == "input":
            return env.input
        out = env.output
        if kind == "logits":
            return out.logits if hasattr(out, "logits") else out[0]
        return out[0] if isinstance(out, tuple) else out

    def write(self, site: str | Site, value: torch.Tensor) -> None:
        """Inside a trace: replace the tensor at ``site`` with ``value`` (same shape).

        ``resid_mid`` has no module of its own: the MLP's norm gets ``value`` as input and the
        difference is added to the block output, so the skip connection carries ``value`` too.
        After writing ``resid_mid.L``, read no other site of layer L in the same trace
        (nnsight needs forward order).
        """
        s = self.site(site)
        env, kind = self._where(s)
        if s.name == "resid_mid":
            old = env.input
            env.input = value
            self._add_to_block_output(int(s.layer or 0), value - old)
            return
        if kind == "input":
            env.input = value
            return
        out = env.output
        if kind == "logits":
            if hasattr(out, "logits"):
                out.logits = value
            else:
                env.output = (value, *out[1:])
            return
        if isinstance(out, tuple):
            env.output = (value, *out[1:])
        else:
            env.output = value

    def _add_to_block_output(self, layer: int, delta: torch.Tensor) -> None:
        env = self.envoy(self.spec.accessors["resid_post"].path.format(L=layer))
        out = env.output
        if isinstance(out, tuple):
            env.output = (out[0] + delta, *out[1:])
        else:
            env.output = out + delta

    # ------------------------------------------------------------ tokenizing
    def check_prompts(self, prompts: str | Sequence[str]) -> list[str]:
        """Normalise to a list of prompts and reject empty, non-str or over-long ones."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, Sequence) or isinstance(prompts, (bytes, bytearray)):
            raise PromptError(
                f"prompts must be a string or a list of strings, got {type(prompts).__name__}"
            )
        prompts = list(prompts)
        if not prompts:
            raise PromptError("the prompt list is empty: pass at least one prompt string")
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise PromptError(f"prompt {i} is a {type(p).__name__}, not a str: pass text")
            if not p.strip():
                raise PromptError(f"prompt {i} is empty or whitespace: type some text to analyse")
        return prompts

    def tokenize(
        self, prompts: str | Sequence[str], *, padding_side: str = "right", max_length: int | None = None
    ) -> Tokens:
        """Tokenize and pad a batch; errors name over-long prompts and the context length."""
        prompts = self.check_prompts(prompts)
        limit = max_length or self.n_ctx
        enc = [self.tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
        for i, ids in enumerate(enc):
            if len(ids) == 0:
                raise PromptError(f"prompt {i} tokenizes to nothing: type some text")
            if len(ids) > limit:
                raise PromptError(
                    f"prompt {i} has {len(ids)} tokens, more than the limit of {limit} "
                    f"({self.name} context {self.n_ctx}): shorten it or split it"
                )
        n = max(len(e) for e in enc)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(enc), n), pad, dtype=torch.long)
        mask = torch.zeros((len(enc), n), dtype=torch.long)
        for i, e in enumerate(enc):
            if padding_side == "right":
                ids[i, : len(e)] = torch.tensor(e)
                mask[i, : len(e)] = 1
            else:
                ids[i, n - len(e) :] = torch.tensor(e)
                mask[i, n - len(e) :] = 1
        return Tokens(ids, mask, [len(e) for e in enc], padding_side)

    def to_str_tokens(self, text: str) -> list[str]:
        """The prompt's tokens as strings (as the model sees them)."""
        ids = self.tokenize(text).input_ids[0].tolist()
        return [self.tokenizer.decode([i]) for i in ids]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # ---------------------------------------------------------------- running
    @property
    def _remote_kw(self) -> dict[str, Any]:
        if self.remote is False or self.remote is None:
            return {}
        if self.remote == "local":
            return {"remote": "local"}
        return {"remote": True}

    def trace(self, *inputs: Any, **kwargs: Any) -> Any:
        """``self.nn.trace(...)`` with this model's remote setting applied."""
        if self.remote is True:
            check_remote_ready()
        return self.nn.trace(*inputs, **{**self._remote_kw, **kwargs})

    @property
    def remote_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``self.nn.generate(...)`` (nnsight needs that call written
        directly in the ``with`` statement, so it cannot be wrapped)."""
        if self.remote is True:
            check_remote_ready()
        return dict(self._remote_kw)

    def run_with_cache(
        self, prompts: str | Sequence[str], sites: Iterable[str | Site] | None = None
    ) -> tuple[torch.Tensor, ActivationCache]:
        """One nnsight trace: ``(logits [batch, pos, vocab], cache)`` (right-padded batch).

        ``sites=None`` caches every layer site; ``cache.attention_mask`` marks real tokens.
        """
        toks = self.tokenize(prompts)
        wanted = self.sites() if sites is None else [self.site(s) for s in sites]
        wanted = sorted(set(wanted), key=lambda s: s.order_key)
        saved: dict[str, Any] = {}
        with torch.no_grad():
            with self.trace(toks.as_dict()):
                for s in wanted:
                    saved[str(s)] = self.read(s).save()  # type: ignore[attr-defined]
                logits = self.read(Site("logits")).save()  # type: ignore[attr-defined]
        data = {k: _value(v).detach() for k, v in saved.items()}
        return _value(logits).detach(), ActivationCache(data, toks.attention_mask)

    def generate(
        self,
        prompts: str | Sequence[str],
        max_new_tokens: int = 32,
        *,
        do_sample: bool = False,
        **kwargs: Any,
    ) -> list[str]:
        """Plain generation (greedy by default) through nnsight; returns the continuations."""
        prompts = self.check_prompts(prompts)
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise PromptError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
        toks = self.tokenize(prompts, padding_side="left", max_length=self.n_ctx - max_new_tokens)
        gen_kw = dict(max_new_tokens=max_new_tokens, do_sample=do_sample,
                      pad_token_id=self.tokenizer.pad_token_id)
        if not do_sample:
            gen_kw.update(temperature=None, top_p=None, top_k=None)
        gen_kw.update(kwargs)
        with torch.no_grad():
            with self.nn.generate(toks.as_dict(), **self.remote_kwargs, **gen_kw) as tr:
                out = tr.result.save()
        out = _value(out)
        n = toks.input_ids.shape[1]
        return [self.decode(row[n:]) for row in out]

    def __repr__(self) -> str:
        remote = "" if not self.remote else f", remote={self.remote!r}"
        return (
            f"Model({self.name!r}, family={self.family}, n_layers={self.n_layers}, "
            f"d_model={self.d_model}, d_vocab={self.d_vocab}{remote})"
        )


def _value(x: Any) -> Any:
    return getattr(x, "value", x)


_REMOTE_OK: dict[str, float] = {}  # host -> time of the last successful reachability check


def check_remote_ready() -> None:
    """Fail fast (no hang) when NDIF cannot be used: no API key, or host unreachable.

        >>> check_remote_ready()      # raises RemoteError naming the fix, or returns None
    """
    import time
    import urllib.error
    import urllib.request

    from nnsight import CONFIG

    key = os.environ.get("NDIF_API_KEY") or getattr(CONFIG.API, "APIKEY", None)
    if not key:
        raise RemoteError(
            "remote=True needs an NDIF API key: get one at https://login.ndif.us and run "
            "`nnsight.CONFIG.set_default_api_key('<key>')` or set NDIF_API_KEY. "
            "Use remote='local' to test remote-safe traces locally."
        )
    host = os.environ.get("NDIF_HOST") or CONFIG.API.HOST
    url = host if re.match(r"^https?://", host) else f"https://{host}"
    if time.monotonic() - _REMOTE_OK.get(url, -1e9) < 60:
        return
    timeout = float(os.environ.get("IW_NDIF_TIMEOUT", "5"))
    try:
        urllib.request.urlopen(url.rstrip("/") + "/ping", timeout=timeout)
    except urllib.error.HTTPError:
        pass  # the server answered (even 404 / 401): it is reachable
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise RemoteError(
            f"NDIF at {url} is unreachable ({reason}; waited at most {timeout:g} s): check your "
            f"network, NDIF_HOST, or the service status; or run locally with remote=False"
        ) from e
    _REMOTE_OK[url] = time.monotonic()


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _remote_repo_id(name_or_path: Any, hf: Any) -> str:
    """The Hugging Face id NDIF knows this model by (remote=True needs one)."""
    guess = getattr(hf.config, "_name_or_path", "") or ""
    if _REPO_ID.match(guess) and not Path(guess).exists():
        return guess
    raise RemoteError(
        f"remote=True cannot run {str(name_or_path)!r}: NDIF runs models it hosts, named by "
        f"their Hugging Face id (e.g. load_model('meta-llama/Llama-3.1-8B', remote=True)). "
        f"Use remote='local' to check a trace is remote-safe on this machine."
    )


def _load_remote_meta(repo_id: str) -> Model:
    """A model NDIF hosts: its structure on the meta device (no weights), traced remotely."""
    from nnsight import TransformersModel
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(repo_id)
        nn = TransformersModel(repo_id, task="text-generation", tokenizer=tok)
    except (OSError, ValueError) as e:
        raise ModelLoadError(
            f"could not read the config of {repo_id!r} from the Hugging Face Hub ({e}): check "
            f"the id, your network, and HF_TOKEN for gated models"
        ) from e
    return Model(nn._module, nn.tokenizer, name=repo_id, remote=True, repo_id=repo_id, nn=nn)


TINY_PREFIX = "tiny-"


def _check_load_args(name_or_path: Any, dtype: Any, device: Any) -> None:
    """Refuse a bad name, dtype or device before anything is built (not deep inside torch)."""
    if name_or_path is not None:
        if not isinstance(name_or_path, (str, os.PathLike)):
            raise ModelLoadError(
                f"load_model takes a name or folder path, got {type(name_or_path).__name__} "
                f"{name_or_path!r}: pass None (embedded default), 'tiny-llama' or a folder"
            )
        if not str(name_or_path).strip():
            raise ModelLoadError("the model name is empty: pass None for the embedded default, "
                                 "a tiny model name such as 'tiny-llama', or a folder path")
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise ModelLoadError(f"dtype must be a torch dtype such as torch.float32, got {dtype!r}")
    if device is not None:
        try:
            torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ModelLoadError(f"device {device!r} is not a torch device ({e}): use 'cpu', "
                                 f"'cuda', 'cuda:0' or 'mps'") from e


def load_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    remote: RemoteMode = False,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> Model:
    """Load a model behind nnsight.

    ``None``: the embedded SmolLM2-135M-Instruct (cached as safetensors after the first load).
    ``"tiny-llama"`` / ``"tiny-gpt2"`` / ...: in-process test models. A folder path: any
    supported causal LM saved by transformers. ``remote``: ``True`` for NDIF, ``"local"`` for
    nnsight's local simulation of remote execution. With ``remote=True`` a Hugging Face id that is
    not a local folder (``"meta-llama/Llama-3.1-8B"``) builds the model without weights (NDIF holds
    them); the embedded default is sent to NDIF as ``HuggingFaceTB/SmolLM2-135M-Instruct``.

        >>> model = load_model()                            # embedded SmolLM2, ~1 s once cached
        >>> model = load_model("tiny-llama")                # in-process test model
        >>> model = load_model("tiny-llama", remote="local")  # traces go through serialization
    """
    from .loading import DEFAULT_MODEL_NAME, DEFAULT_REPO_ID, load_default_hf, load_folder_hf
    from .tiny import TINY_FAMILIES, build_tiny

    if remote not in (False, True, "local", None):
        raise ModelLoadError(f"remote must be False, True or 'local', got {remote!r}")
    _check_load_args(name_or_path, dtype, device)
    if remote is True:
        check_remote_ready()  # before any loading, so a bad key or host fails in seconds
    repo_id = None
    if name_or_path is None:
        hf, tok = load_default_hf(dtype=dtype)
        name = DEFAULT_MODEL_NAME
        repo_id = DEFAULT_REPO_ID
    elif isinstance(name_or_path, str) and name_or_path.startswith(TINY_PREFIX):
        fam = name_or_path[len(TINY_PREFIX):]
        if fam not in TINY_FAMILIES:
            raise ModelLoadError(
                f"unknown tiny model {name_or_path!r}: choose one of "
                f"{', '.join(TINY_PREFIX + f for f in TINY_FAMILIES)}"
            )
        hf, tok = build_tiny(fam)
        if dtype is not None:
            hf = hf.to(dtype)
        name = name_or_path
    else:
        path = Path(name_or_path).expanduser()
        if remote is True and not path.exists() and _REPO_ID.match(str(name_or_path)):
            return _load_remote_meta(str(name_or_path))
        if not path.exists():
            raise ModelLoadError(
                f"model {str(name_or_path)!r} not found: pass None (embedded default), a tiny "
                f"model name such as 'tiny-llama', or an existing local Hugging Face folder "
                f"(downloads are not done at run time)"
            )
        hf, tok = load_folder_hf(path, dtype=dtype)
        name = path.name
    if device is not None:
        try:
            hf = hf.to(device)
        except (RuntimeError, AssertionError) as e:  # e.g. "Torch not compiled with CUDA enabled"
            raise ModelLoadError(f"cannot move the model to device {device!r}: {e}") from e
    if remote is True and repo_id is None:
        repo_id = _remote_repo_id(name_or_path, hf)
    return Model(hf, tok, name=name, remote=remote or False, repo_id=repo_id)
