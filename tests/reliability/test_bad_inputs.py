"""The bad-input matrix: every public entry point, fed what a half-finished notebook feeds it.

Each row is ``(entry point, what is wrong, call, expected error class, what the message must
say)``. A row passes only if the call raises *our* error (an ``InterpWidgetsError`` of the
expected class, never a bare IndexError / KeyError / RuntimeError from inside torch) whose
message matches the pattern (the bad value, the valid range or the fix). Calls that used to
return a silently wrong result are rows too: they must now refuse.

tests/reliability/README.md lists the counts per entry point; ``test_readme_counts_match``
keeps the two in step.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

import interp_widgets as iw
from interp_widgets.errors import (
    CorpusError,
    DictionaryError,
    FeatureError,
    GraphError,
    InterpWidgetsError,
    ModelLoadError,
    PromptError,
    SiteError,
    SteeringError,
    UnsafeFileError,
)

LONG = "cat " * 400  # > 256 tokens: tiny-llama's context
DOCS = [f"Report {i}: the {['red', 'green', 'blue'][i % 3]} train left station {i % 7} at noon."
        for i in range(60)]
SCAN = dict(max_tokens=256, batch_size=2, seq_len=16, top_k=2, window=4, progress=False)


@dataclass(frozen=True)
class Case:
    entry: str
    what: str
    call: Callable[[Any], Any]
    error: type[InterpWidgetsError]
    match: str

    @property
    def id(self) -> str:
        return f"{self.entry}: {self.what}"


class Ctx:
    """What the rows need: the tiny model, dictionaries, broken files, a scanned index, a graph."""

    def __init__(self, model, sae, transcoders, files, tmp):
        self.model, self.sae, self.tcs, self.files, self.tmp = model, sae, transcoders, files, tmp
        self._cache: dict[str, Any] = {}

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def gpt2(self):
        return self.once("gpt2", lambda: iw.load_model("tiny-gpt2"))

    @property
    def other_width(self):
        return iw.SAE.random(d_in=32, n_features=8, site="resid_post.1")

    @property
    def other_model(self):
        return iw.SAE.random(d_in=64, n_features=8, site="resid_post.1", metadata={"model": "gpt2-small"})

    @property
    def acts(self):
        return self.once("acts", lambda: iw.feature_activations(self.model, self.sae, ["The cat sat"]))

    @property
    def index(self):
        return self.once("index", lambda: iw.scan(self.model, self.sae, iw.Corpus.from_strings(DOCS), **SCAN))

    @property
    def graph_json(self) -> dict:
        def make():
            g = iw.attribute(self.model, "The cat sat", "neurons", max_feature_nodes=8, progress=False)
            return g.to_json()
        return json.loads(json.dumps(self.once("graph", make)))  # a fresh deep copy per row

    def gjson(self, mutate: Callable[[dict], Any]) -> Any:
        data = self.graph_json
        mutate(data)
        return iw.AttributionGraph.from_json(data)

    def write(self, name: str, text: str | bytes) -> Path:
        p = self.tmp / name
        p.write_bytes(text.encode() if isinstance(text, str) else text)
        return p

    def steer(self, *specs: Any) -> Any:
        return iw.steer(self.model, list(specs))

    def gen(self, spec: Any, prompt: Any = "The cat sat", **kw: Any) -> Any:
        return iw.steer(self.model, spec).generate(prompt, **{"max_new_tokens": 3, **kw})


def _set(obj: dict, path: str, value: Any) -> None:
    *head, last = path.split(".")
    for k in head:
        obj = obj[int(k)] if k.isdigit() else obj[k]
    if last.isdigit():
        obj[int(last)] = value
    else:
        obj[last] = value


def _del(obj: dict, path: str) -> None:
    *head, last = path.split(".")
    for k in head:
        obj = obj[int(k)] if k.isdigit() else obj[k]
    del obj[int(last) if last.isdigit() else last]


def _rename(d: dict, i: int, new: str) -> None:
    """Rename node ``i`` everywhere (its links too), so only the id itself is wrong."""
    old = d["nodes"][i]["node_id"]
    d["nodes"][i]["node_id"] = new
    for ln in d["links"]:
        for k in ("source", "target"):
            if ln[k] == old:
                ln[k] = new


def _feature_node(d: dict) -> int:
    return next(i for i, n in enumerate(d["nodes"]) if n["feature_type"] == "cross layer transcoder")


# ====================================================================================== rows
C = Case
CASES: list[Case] = [
    # -------------------------------------------------------------------- load_model
    C("load_model", "empty name", lambda c: iw.load_model(""), ModelLoadError, "not found|pass None"),
    C("load_model", "whitespace name", lambda c: iw.load_model("   "), ModelLoadError, "pass None"),
    C("load_model", "non-str name", lambda c: iw.load_model(123), ModelLoadError, "int|name or folder"),
    C("load_model", "unknown tiny family", lambda c: iw.load_model("tiny-bert"), ModelLoadError, "tiny-llama"),
    C("load_model", "missing folder", lambda c: iw.load_model("/nonexistent/model"), ModelLoadError, "not found"),
    C("load_model", "folder without config", lambda c: iw.load_model(c.files["no_weights"].parent / "tset" / "layer_00"),
      ModelLoadError, "config"),
    C("load_model", "pickle-only folder", lambda c: iw.load_model(c.files["pickle_only"]), ModelLoadError,
      "pickle|safetensors|config"),
    C("load_model", "remote value", lambda c: iw.load_model("tiny-llama", remote="yes"), ModelLoadError,
      "False, True or 'local'"),
    C("load_model", "dtype not a dtype", lambda c: iw.load_model("tiny-llama", dtype="float7"), ModelLoadError,
      "dtype"),
    C("load_model", "device unknown", lambda c: iw.load_model("tiny-llama", device="gpu9"), ModelLoadError,
      "device"),
    # -------------------------------------------------------------------- load_dictionary
    C("load_dictionary", "empty path", lambda c: iw.load_dictionary(""), DictionaryError, "folder|path"),
    C("load_dictionary", "non-str path", lambda c: iw.load_dictionary(3.5), DictionaryError, "folder path"),
    C("load_dictionary", "missing folder", lambda c: iw.load_dictionary("/nonexistent/sae"), DictionaryError,
      "neither an existing path"),
    C("load_dictionary", "pickle file", lambda c: iw.load_dictionary(c.files["pkl_file"]), UnsafeFileError,
      "safetensors"),
    C("load_dictionary", "folder with pickle weights only", lambda c: iw.load_dictionary(c.files["pickle_only"]),
      UnsafeFileError, "safetensors"),
    C("load_dictionary", "weights missing", lambda c: iw.load_dictionary(c.files["no_weights"]), DictionaryError,
      "does not exist"),
    C("load_dictionary", "truncated safetensors", lambda c: iw.load_dictionary(c.files["truncated"]), DictionaryError,
      "truncated or corrupted"),
    C("load_dictionary", "truncated header", lambda c: iw.load_dictionary(c.files["truncated_header"]),
      DictionaryError, "truncated or corrupted"),
    C("load_dictionary", "empty weights file", lambda c: iw.load_dictionary(c.files["empty_weights"]),
      DictionaryError, "truncated or corrupted"),
    C("load_dictionary", "random bytes as weights", lambda c: iw.load_dictionary(c.files["random_bytes"]),
      DictionaryError, "truncated or corrupted"),
    C("load_dictionary", "corrupted header byte", lambda c: iw.load_dictionary(c.files["header_flip"]),
      DictionaryError, "truncated or corrupted|has no W_dec .it holds.*re-save"),
    C("load_dictionary", "gigantic header length", lambda c: iw.load_dictionary(c.files["huge_header_len"]),
      DictionaryError, "truncated or corrupted"),
    C("load_dictionary", "config missing keys", lambda c: iw.load_dictionary(c.files["missing_keys"]),
      DictionaryError, "missing keys: d_in, site"),
    C("load_dictionary", "config wrong type", lambda c: iw.load_dictionary(c.files["wrong_types"]),
      DictionaryError, "d_in must be a positive int, got '64'"),
    C("load_dictionary", "config float width", lambda c: iw.load_dictionary(c.files["float_width"]),
      DictionaryError, "n_features must be a positive int"),
    C("load_dictionary", "config negative width", lambda c: iw.load_dictionary(c.files["negative_width"]),
      DictionaryError, "n_features must be a positive int"),
    C("load_dictionary", "config gigantic width", lambda c: iw.load_dictionary(c.files["gigantic_width"]),
      DictionaryError, "n_features=1000000000000 but weights.safetensors has W_enc \\(64, 32\\)"),
    C("load_dictionary", "config gigantic d_in", lambda c: iw.load_dictionary(c.files["gigantic_d_in"]),
      DictionaryError, "d_in"),
    C("load_dictionary", "config NaN width", lambda c: iw.load_dictionary(c.files["json_nan"]),
      DictionaryError, "d_in must be a positive int"),
    C("load_dictionary", "config unparseable site", lambda c: iw.load_dictionary(c.files["bad_site"]),
      DictionaryError, "resid_post.x"),
    C("load_dictionary", "config site not a string", lambda c: iw.load_dictionary(c.files["site_not_str"]),
      DictionaryError, "site"),
    C("load_dictionary", "config unknown architecture", lambda c: iw.load_dictionary(c.files["bad_arch"]),
      DictionaryError, "gelu"),
    C("load_dictionary", "config negative k", lambda c: iw.load_dictionary(c.files["bad_k"]), DictionaryError, "k"),
    C("load_dictionary", "config k over width", lambda c: iw.load_dictionary(c.files["k_too_big"]), DictionaryError,
      "k"),
    C("load_dictionary", "config unknown kind", lambda c: iw.load_dictionary(c.files["unknown_kind"]),
      DictionaryError, "unknown kind 'autoencoder'"),
    C("load_dictionary", "config is a JSON array", lambda c: iw.load_dictionary(c.files["json_array"]),
      DictionaryError, "not a dictionary folder|JSON object"),
    C("load_dictionary", "config invalid JSON", lambda c: iw.load_dictionary(c.files["json_invalid"]),
      DictionaryError, "not valid JSON"),
    C("load_dictionary", "labels.json invalid", lambda c: iw.load_dictionary(c.files["labels_broken"]),
      DictionaryError, "labels"),
    C("load_dictionary", "labels.json wrong type", lambda c: iw.load_dictionary(c.files["labels_wrong_type"]),
      DictionaryError, "labels"),
    C("load_dictionary", "labels.json bad ids", lambda c: iw.load_dictionary(c.files["labels_bad_ids"]),
      DictionaryError, "labels"),
    C("load_dictionary", "SAELens without hook", lambda c: iw.load_dictionary(c.files["saelens_no_hook"]),
      DictionaryError, "no hook_name"),
    C("load_dictionary", "SAELens d_sae string", lambda c: iw.load_dictionary(c.files["saelens_d_sae_str"]),
      DictionaryError, "d_sae must be a positive int"),
    C("load_dictionary", "SAELens unknown hook", lambda c: iw.load_dictionary(c.files["saelens_bad_hook"]),
      DictionaryError, "hook_nothing"),
    C("load_dictionary", "SAELens unknown architecture", lambda c: iw.load_dictionary(c.files["saelens_arch"]),
      DictionaryError, "gated"),
    C("load_dictionary", "another model's width", lambda c: iw.load_dictionary(c.files["good"], model=c.gpt2),
      DictionaryError, "d_model|tiny-gpt2"),
    C("load_dictionary", "unknown starter name", lambda c: iw.load_dictionary("starter/nothing.3"), DictionaryError,
      "starter"),
    # -------------------------------------------------------------------- load_transcoders
    C("load_transcoders", "an SAE folder", lambda c: iw.load_transcoders(c.files["good"]), DictionaryError,
      "not transcoders"),
    C("load_transcoders", "layers not ints", lambda c: iw.load_transcoders(c.files["tset_bad_layers"]),
      DictionaryError, "'layers' must be a list of ints"),
    C("load_transcoders", "a listed layer is missing", lambda c: iw.load_transcoders(c.files["tset_missing_layer"]),
      DictionaryError, "layer_07"),
    C("load_transcoders", "missing folder", lambda c: iw.load_transcoders("/nonexistent/tc"), DictionaryError,
      "neither an existing path"),
    C("load_transcoders", "pickle file", lambda c: iw.load_transcoders(c.files["pkl_file"]), UnsafeFileError,
      "safetensors"),
    C("load_transcoders", "non-str path", lambda c: iw.load_transcoders(None), DictionaryError, "folder path"),
    C("load_transcoders", "another model", lambda c: iw.load_transcoders(c.files["tset"], model=c.gpt2),
      DictionaryError, "d_model|tiny-gpt2"),
    C("load_transcoders", "circuit-tracer YAML broken",
      lambda c: (c.write("config.yaml", "model_kind: [unclosed"), iw.load_transcoders(c.tmp))[1],
      DictionaryError, "config.yaml"),
    # -------------------------------------------------------------------- feature_activations
    C("feature_activations", "no prompts", lambda c: iw.feature_activations(c.model, c.sae, []), PromptError, "empty"),
    C("feature_activations", "empty prompt", lambda c: iw.feature_activations(c.model, c.sae, [""]), PromptError,
      "empty"),
    C("feature_activations", "whitespace prompt", lambda c: iw.feature_activations(c.model, c.sae, ["ok", " \n\t"]),
      PromptError, "empty or whitespace"),
    C("feature_activations", "non-str prompt", lambda c: iw.feature_activations(c.model, c.sae, ["ok", 7]),
      PromptError, "int"),
    C("feature_activations", "None prompts", lambda c: iw.feature_activations(c.model, c.sae, None), PromptError,
      "NoneType|str"),
    C("feature_activations", "prompt over the context", lambda c: iw.feature_activations(c.model, c.sae, [LONG]),
      PromptError, "limit of 256"),
    C("feature_activations", "batch_size 0", lambda c: iw.feature_activations(c.model, c.sae, ["ok"], batch_size=0),
      PromptError, "batch_size"),
    C("feature_activations", "unknown layer", lambda c: iw.feature_activations(
        c.model, iw.SAE.random(d_in=64, n_features=8, site="resid_post.9"), ["ok"]), SiteError, "layers 0-3"),
    C("feature_activations", "another width", lambda c: iw.feature_activations(c.model, c.other_width, ["ok"]),
      DictionaryError, "d_in=32.*d_model=64"),
    C("feature_activations", "another model", lambda c: iw.feature_activations(c.model, c.other_model, ["ok"]),
      DictionaryError, "gpt2-small"),
    C("feature_activations", "not a dictionary", lambda c: iw.feature_activations(c.model, "sae", ["ok"]),
      DictionaryError, "not a dictionary: pass SAEs"),
    C("feature_activations", "feature id too big", lambda c: c.acts.feature_values((c.sae.name, 32)), FeatureError,
      "0-31"),
    C("feature_activations", "gigantic feature id", lambda c: c.acts.feature_values((c.sae.name, 10 ** 20)),
      FeatureError, "0-31"),
    C("feature_activations", "negative feature id", lambda c: c.acts.feature_values((c.sae.name, -1)), FeatureError,
      "0-31"),
    C("feature_activations", "float feature id", lambda c: c.acts.feature_values((c.sae.name, 1.5)), FeatureError,
      "int"),
    C("feature_activations", "position out of range", lambda c: c.acts.top_features(99), PromptError, "tokens 0-"),
    # -------------------------------------------------------------------- scan
    C("scan", "corpus not a Corpus", lambda c: iw.scan(c.model, c.sae, DOCS, **SCAN), CorpusError, "iw.Corpus"),
    C("scan", "empty corpus", lambda c: iw.Corpus.from_strings([]), CorpusError, "empty|no text"),
    C("scan", "corpus too small", lambda c: iw.scan(c.model, c.sae, iw.Corpus.from_strings(["hi"]), **SCAN),
      CorpusError, "fewer than"),
    C("scan", "max_tokens a string", lambda c: iw.scan(c.model, c.sae, iw.Corpus.from_strings(DOCS),
                                                        **{**SCAN, "max_tokens": "lots"}), CorpusError, "max_tokens"),
    C("scan", "max_tokens negative", lambda c: iw.scan(c.model, c.sae, iw.Corpus.from_strings(DOCS),
                                                        **{**SCAN, "max_tokens": -5}), CorpusError, "max_tokens"),
    C("scan", "batch_size 0", lambda c: iw.scan(c.model, c.sae, iw.Corpus.from_strings(DOCS),
                                                 **{**SCAN, "batch_size": 0}), CorpusError, "batch_size"),
    C("scan", "seq_len over the context", lambda c: iw.scan(c.model, c.sae, iw.Corpus.from_strings(DOCS),
                                                             **{**SCAN, "seq_len": 10_000, "max_tokens": 20_000}),
      CorpusError, "seq_len.*256"),
    C("scan", "top_k 0", lambda c: iw.scan(c.model, c.sae, iw.Corpus.from_strings(DOCS), **{**SCAN, "top_k": 0}),
      CorpusError, "top_k"),
    C("scan", "window over seq_len", lambda c: iw.scan(c.model, c.sae, iw.Corpus.from_strings(DOCS),
                                                        **{**SCAN, "window": 99}), CorpusError, "window in 1-16"),
    C("scan", "another width", lambda c: iw.scan(c.model, c.other_width, iw.Corpus.from_strings(DOCS), **SCAN),
      DictionaryError, "d_in=32"),
    C("scan", "another model", lambda c: iw.scan(c.model, c.other_model, iw.Corpus.from_strings(DOCS), **SCAN),
      DictionaryError, "gpt2-small"),
    C("scan", "feature id out of range", lambda c: c.index.top_examples(32), FeatureError, "0-31"),
    C("scan", "negative feature id", lambda c: c.index.top_examples(-1), FeatureError, "0-31"),
    C("scan", "gigantic feature id", lambda c: c.index.histogram(10 ** 18), FeatureError, "0-31"),
    C("scan", "index file missing", lambda c: iw.FeatureIndex.load(c.tmp / "no_index"), DictionaryError,
      "does not exist"),
    # -------------------------------------------------------------------- steer
    C("steer", "NaN strength", lambda c: iw.Steer(c.sae[3], math.nan), SteeringError, "not finite"),
    C("steer", "inf strength", lambda c: iw.Steer(c.sae[3], math.inf), SteeringError, "not finite"),
    C("steer", "-inf strength", lambda c: iw.Steer(c.sae[3], -math.inf, mode="clamp"), SteeringError, "not finite"),
    C("steer", "strength beyond float32", lambda c: iw.Steer(c.sae[3], 1e300), SteeringError, "1e\\+300"),
    C("steer", "strength a gigantic int", lambda c: iw.Steer(c.sae[3], 10 ** 400), SteeringError, "beyond"),
    C("steer", "huge add strength", lambda c: c.gen(iw.Steer(c.sae[3], 1e30)), SteeringError, "overflow|NaN"),
    C("steer", "huge scale strength", lambda c: c.gen(iw.Steer(c.sae[3], 1e30, mode="scale")), SteeringError,
      "overflow|NaN"),
    C("steer", "huge clamp strength", lambda c: c.gen(iw.Steer(c.sae[3], -1e30, mode="clamp")), SteeringError,
      "overflow|NaN"),
    C("steer", "string strength", lambda c: iw.Steer(c.sae[3], "8"), SteeringError, "real number"),
    C("steer", "feature out of range", lambda c: iw.Steer(c.sae[32], 8.0), FeatureError, "0-31"),
    C("steer", "gigantic feature id", lambda c: iw.Steer(c.sae[2 ** 70], 8.0), FeatureError, "0-31"),
    C("steer", "unknown mode", lambda c: iw.Steer(c.sae[3], 8.0, mode="push"), SteeringError, "add, scale"),
    C("steer", "unknown layer", lambda c: c.steer(iw.Steer(torch.ones(64), 1.0, site="resid_post.9")), SiteError,
      "layers 0-3"),
    C("steer", "unknown site name", lambda c: c.steer(iw.Steer(torch.ones(64), 1.0, site="resid_middle.1")), SiteError,
      "resid_middle"),
    C("steer", "direction of another width", lambda c: c.steer(iw.Steer(torch.ones(32), 1.0, site="resid_post.1")),
      SteeringError, "32.*64|64.*32"),
    C("steer", "NaN direction", lambda c: iw.Steer(torch.full((64,), math.nan), 1.0, site="resid_post.1"),
      SteeringError, "NaN"),
    C("steer", "dictionary of another width", lambda c: c.steer(iw.Steer(c.other_width[1], 8.0)), DictionaryError,
      "d_in=32|d_model=64"),
    C("steer", "dictionary of another model", lambda c: c.steer(iw.Steer(c.other_model[1], 8.0)), DictionaryError,
      "gpt2-small"),
    C("steer", "position past the prompt", lambda c: c.gen(iw.Steer(c.sae[3], 8.0, positions=[99])), SteeringError,
      "99"),
    C("steer", "positions word", lambda c: iw.Steer(c.sae[3], 8.0, positions="middle"), SteeringError, "middle"),
    C("steer", "empty prompt", lambda c: c.gen(iw.Steer(c.sae[3], 8.0), ""), PromptError, "empty"),
    C("steer", "whitespace prompt", lambda c: c.gen(iw.Steer(c.sae[3], 8.0), "   "), PromptError, "whitespace"),
    C("steer", "non-str prompt", lambda c: c.gen(iw.Steer(c.sae[3], 8.0), 42), PromptError, "int"),
    C("steer", "prompt over the context", lambda c: c.gen(iw.Steer(c.sae[3], 8.0), LONG), PromptError, "256"),
    C("steer", "max_new_tokens 0", lambda c: c.gen(iw.Steer(c.sae[3], 8.0), max_new_tokens=0), SteeringError,
      "max_new_tokens"),
    C("steer", "gigantic max_new_tokens", lambda c: c.gen(iw.Steer(c.sae[3], 8.0), max_new_tokens=10 ** 12),
      SteeringError, "at most 255"),
    C("steer", "NaN temperature", lambda c: c.gen(iw.Steer(c.sae[3], 8.0), temperature=math.nan), SteeringError,
      "temperature"),
    C("steer", "negative temperature", lambda c: c.gen(iw.Steer(c.sae[3], 8.0), temperature=-1.0), SteeringError,
      "temperature"),
    C("steer", "seed a string", lambda c: c.gen(iw.Steer(c.sae[3], 8.0), seed="x"), SteeringError, "seed"),
    C("steer", "sweep with a NaN strength", lambda c: iw.steering_sweep(c.model, iw.Steer(c.sae[3], 1.0),
                                                                        [0.0, math.nan], "The cat", target=" sat"),
      SteeringError, "finite"),
    # -------------------------------------------------------------------- attribute
    C("attribute", "empty prompt", lambda c: iw.attribute(c.model, "", c.tcs, progress=False), PromptError, "empty"),
    C("attribute", "whitespace prompt", lambda c: iw.attribute(c.model, "  ", c.tcs, progress=False), PromptError,
      "whitespace"),
    C("attribute", "non-str prompt", lambda c: iw.attribute(c.model, 5, c.tcs, progress=False), PromptError,
      "one prompt string"),
    C("attribute", "list of prompts", lambda c: iw.attribute(c.model, ["a", "b"], c.tcs, progress=False),
      PromptError, "one prompt string"),
    C("attribute", "prompt over the context", lambda c: iw.attribute(c.model, LONG, c.tcs, progress=False),
      PromptError, "256"),
    C("attribute", "unknown layer", lambda c: iw.attribute(c.model, "The cat", {9: c.tcs[0]}, progress=False),
      GraphError, "layers 0-3"),
    C("attribute", "transcoder of another width", lambda c: iw.attribute(
        c.model, "The cat", {1: iw.Transcoder.random(d_in=32, n_features=8, layer=1)}, progress=False),
      DictionaryError, "d_model=64"),
    C("attribute", "an SAE instead of a transcoder", lambda c: iw.attribute(c.model, "The cat", {1: c.sae},
                                                                          progress=False),
      GraphError, "mlp_in.1 and write mlp_out.1"),
    C("attribute", "transcoders a string", lambda c: iw.attribute(c.model, "The cat", "starter", progress=False),
      GraphError, "starter|SmolLM2|transcoders"),
    C("attribute", "negative max_feature_nodes", lambda c: iw.attribute(c.model, "The cat", c.tcs,
                                                                      max_feature_nodes=-1, progress=False),
      GraphError, "max_feature_nodes"),
    C("attribute", "batch_size 0", lambda c: iw.attribute(c.model, "The cat", c.tcs, batch_size=0, progress=False),
      GraphError, "batch_size"),
    C("attribute", "target of two tokens", lambda c: iw.attribute(c.model, "The cat", c.tcs, targets="sat down",
                                                                progress=False), GraphError, "one token"),
    C("attribute", "target id out of vocab", lambda c: iw.attribute(c.model, "The cat", c.tcs, targets=10 ** 9,
                                                                  progress=False), GraphError, "vocab ids are 0-"),
    C("attribute", "no targets", lambda c: iw.attribute(c.model, "The cat", c.tcs, targets=[], progress=False),
      GraphError, "targets is empty"),
    C("attribute", "NaN desired_logit_prob", lambda c: iw.attribute(c.model, "The cat", c.tcs,
                                                                  desired_logit_prob=math.nan, progress=False),
      GraphError, "desired_logit_prob"),
    C("attribute", "max_n_logits 0", lambda c: iw.attribute(c.model, "The cat", c.tcs, max_n_logits=0,
                                                          progress=False), GraphError, "max_n_logits"),
    C("attribute", "NaN min_activation", lambda c: iw.attribute(c.model, "The cat", c.tcs, min_activation=math.nan,
                                                              progress=False), GraphError, "min_activation"),
    C("attribute", "memory_budget words", lambda c: iw.attribute(c.model, "The cat", c.tcs, memory_budget="lots",
                                                               progress=False), GraphError, "4GB"),
    C("attribute", "memory_budget negative", lambda c: iw.attribute(c.model, "The cat", c.tcs, memory_budget=-5,
                                                                  progress=False), GraphError, "memory_budget"),
    C("attribute", "integer dtype", lambda c: iw.attribute(c.model, "The cat", c.tcs, dtype=torch.int8,
                                                         progress=False), GraphError, "float32"),
    # -------------------------------------------------------------------- graph import
    C("graph import", "file missing", lambda c: iw.AttributionGraph.from_json(c.tmp / "none.json"), GraphError,
      "does not exist"),
    C("graph import", "invalid JSON", lambda c: iw.AttributionGraph.from_json(c.write("bad.json", "{\"nodes\": [")),
      GraphError, "not valid JSON"),
    C("graph import", "not UTF-8", lambda c: iw.AttributionGraph.from_json(c.write("bin.json", b"\xff\xfe\x00")),
      GraphError, "not valid JSON"),
    C("graph import", "top level a list", lambda c: iw.AttributionGraph.from_json([]), GraphError, "JSON object"),
    C("graph import", "top level a list (file)", lambda c: iw.AttributionGraph.from_json(c.write("l.json", "[]")),
      GraphError, "JSON object"),
    C("graph import", "a folder as path", lambda c: iw.AttributionGraph.from_json(c.tmp), GraphError,
      "does not exist|not a file"),
    C("graph import", "missing nodes", lambda c: c.gjson(lambda d: _del(d, "nodes")), GraphError, "missing top-level"),
    C("graph import", "no nodes at all", lambda c: c.gjson(lambda d: (_set(d, "nodes", []), _set(d, "links", []),
                                                                   _set(d, "qParams", {}))), GraphError, "no nodes"),
    C("graph import", "our n_layers a string", lambda c: c.gjson(
        lambda d: _set(d, "metadata.interp_widgets.metadata.n_layers", "")), GraphError, "n_layers must be"),
    C("graph import", "pruning_settings a list", lambda c: c.gjson(
        lambda d: (_set(d, "metadata.pruning_settings", [0.8]), _set(d, "metadata.interp_widgets.metadata.pruning", None))),
      GraphError, "pruning_settings"),
    C("graph import", "missing metadata.prompt", lambda c: c.gjson(lambda d: _del(d, "metadata.prompt")), GraphError,
      "metadata.prompt"),
    C("graph import", "prompt_tokens not strings", lambda c: c.gjson(lambda d: _set(d, "metadata.prompt_tokens", [1])),
      GraphError, "prompt_tokens"),
    C("graph import", "node missing node_id", lambda c: c.gjson(lambda d: _del(d, "nodes.0.node_id")), GraphError,
      "has no 'node_id'"),
    C("graph import", "ctx_idx a string", lambda c: c.gjson(lambda d: _set(d, "nodes.0.ctx_idx", "3")), GraphError,
      "ctx_idx"),
    C("graph import", "ctx_idx a bool", lambda c: c.gjson(lambda d: _set(d, "nodes.0.ctx_idx", True)), GraphError,
      "ctx_idx"),
    C("graph import", "gigantic ctx_idx", lambda c: c.gjson(lambda d: _set(d, "nodes.0.ctx_idx", 10 ** 30)),
      GraphError, "outside the prompt's"),
    C("graph import", "negative ctx_idx", lambda c: c.gjson(lambda d: _set(d, "nodes.0.ctx_idx", -4)), GraphError,
      "outside the prompt's"),
    C("graph import", "gigantic feature", lambda c: c.gjson(
        lambda d: _set(d, f"nodes.{_feature_node(d)}.iw.feature", 10 ** 40)), GraphError, "feature = 1000.*out of range"),
    C("graph import", "gigantic feature in the node id", lambda c: c.gjson(
        lambda d: (_set(d["nodes"][_feature_node(d)], "iw", None),
                   _rename(d, _feature_node(d), "1_" + "9" * 40 + "_1"))), GraphError, "out of range"),
    C("graph import", "gigantic layer", lambda c: c.gjson(
        lambda d: (_set(d["nodes"][_feature_node(d)], "iw", None),
                   _set(d, f"nodes.{_feature_node(d)}.layer", "9" * 30))), GraphError, "out of range"),
    C("graph import", "our fields with a bad layer", lambda c: c.gjson(
        lambda d: _set(d, f"nodes.{_feature_node(d)}.iw.layer", "deep")), GraphError, "layer"),
    C("graph import", "our fields missing layer", lambda c: c.gjson(
        lambda d: _del(d, f"nodes.{_feature_node(d)}.iw.layer")), GraphError, "layer"),
    C("graph import", "our fields with a string activation", lambda c: c.gjson(
        lambda d: _set(d, f"nodes.{_feature_node(d)}.iw.activation", "high")), GraphError, "activation"),
    C("graph import", "feature id not layer_feature_pos", lambda c: c.gjson(
        lambda d: (_set(d["nodes"][_feature_node(d)], "iw", None), _rename(d, _feature_node(d), "feat-9")
                   )), GraphError, "layer_feature_position"),
    C("graph import", "duplicate node ids", lambda c: c.gjson(lambda d: _set(d, "nodes.1.node_id", d["nodes"][0]["node_id"])),
      GraphError, "duplicate node_id"),
    C("graph import", "edge to an unknown node", lambda c: c.gjson(lambda d: _set(d, "links.0.target", "nope")),
      GraphError, "dangling edge"),
    C("graph import", "edge weight NaN", lambda c: c.gjson(lambda d: _set(d, "links.0.weight", math.nan)), GraphError,
      "finite"),
    C("graph import", "edge weight gigantic", lambda c: c.gjson(lambda d: _set(d, "links.0.weight", 10 ** 400)),
      GraphError, "finite"),
    C("graph import", "edge weight a string", lambda c: c.gjson(lambda d: _set(d, "links.0.weight", "0.5")),
      GraphError, "finite number"),
    C("graph import", "link not an object", lambda c: c.gjson(lambda d: _set(d, "links.0", ["a", "b"])), GraphError,
      "not an object"),
    C("graph import", "pinned unknown node", lambda c: c.gjson(lambda d: _set(d, "qParams.pinnedIds", ["nope"])),
      GraphError, "unknown nodes"),
    C("graph import", "supernode unknown node", lambda c: c.gjson(lambda d: _set(d, "qParams.supernodes",
                                                                              [["g", "nope"]])),
      GraphError, "unknown nodes"),
    C("graph import", "supernodes not lists", lambda c: c.gjson(lambda d: _set(d, "qParams.supernodes", {"g": 1})),
      GraphError, "supernodes"),
    C("graph import", "our token_ids wrong type", lambda c: c.gjson(
        lambda d: _set(d, "metadata.interp_widgets.token_ids", "abc")), GraphError, "token_ids"),
    C("graph import", "our labels wrong type", lambda c: c.gjson(
        lambda d: _set(d, "metadata.interp_widgets.labels", ["a"])), GraphError, "labels"),
    C("graph import", "our metadata wrong type", lambda c: c.gjson(
        lambda d: _set(d, "metadata.interp_widgets.metadata", 5)), GraphError, "metadata"),
    C("graph import", "binary folder missing", lambda c: iw.AttributionGraph.load(c.tmp / "no_graph"), GraphError,
      "does not exist"),
    C("graph import", "binary weights pickled", lambda c: iw.AttributionGraph.load(c.files["pickle_only"]), GraphError,
      "does not exist|safetensors"),
]


@pytest.fixture(scope="module")
def ctx(tiny_llama, sae, transcoders, files, tmp_path_factory):
    return Ctx(tiny_llama, sae, transcoders, files, tmp_path_factory.mktemp("bad"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_our_error(case: Case, ctx: Ctx) -> None:
    with pytest.raises(Exception) as info:  # noqa: PT011 - the class is checked below, with the message
        case.call(ctx)
    err = info.value
    assert isinstance(err, InterpWidgetsError), (
        f"{case.id}: a bare {type(err).__name__} escaped: {err}")
    assert isinstance(err, case.error), f"{case.id}: {type(err).__name__} (wanted {case.error.__name__}): {err}"
    msg = str(err)
    assert re.search(case.match, msg), f"{case.id}: message does not say {case.match!r}: {msg}"
    assert len(msg) > 25, f"{case.id}: message too short to name the fix: {msg!r}"


def counts() -> Counter:
    return Counter(c.entry for c in CASES)


def test_every_entry_point_has_rows() -> None:
    n = counts()
    for entry in ("load_model", "load_dictionary", "load_transcoders", "feature_activations", "scan", "steer",
                  "attribute", "graph import"):
        assert n[entry] >= 8, (entry, n[entry])
    assert len({c.id for c in CASES}) == len(CASES), "row ids must be unique"


def test_readme_counts_match() -> None:
    """tests/reliability/README.md lists the bad inputs tried per entry point: keep it true."""
    from test_bad_panel_inputs import ROWS

    readme = (Path(__file__).parent / "README.md").read_text()
    table = dict(re.findall(r"^\| `?([\w ]+?)`? \| (\d+) \|", readme, re.M))
    n = counts() + Counter(r.panel for r in ROWS)
    for entry, k in n.items():
        assert int(table.get(entry, -1)) == k, f"README says {table.get(entry)} rows for {entry}, the code has {k}"
    totals = [int(x) for x in re.findall(r"^\| \*\*total\*\* \| \*\*(\d+)\*\* \|", readme, re.M)]
    assert totals == [len(CASES), len(ROWS)]
