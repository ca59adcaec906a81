# Source of notebooks/06_your_model_and_ndif.ipynb: edit here, then run `python scripts/build_notebooks.py`
# (cells: `# %%` code, `# %% [markdown]` text; metadata as key=<json> after the marker).

# %% [markdown]
# # Your own model, SAELens SAEs, and NDIF
#
# **You will learn**
#
# - to load any local Hugging Face model folder (Llama, Qwen2/3, Mistral, Gemma/Gemma-2, GPT-2,
#   GPT-NeoX families) and use the same panels on it;
# - to load SAEs in SAELens' format, and what that format holds;
# - to run the same code on a large model on **NDIF** (the National Deep Inference Fabric) by
#   changing one switch: `remote=True`.
#
# **The switch.** `REMOTE` below is `"local"`: nnsight then runs every trace through the same
# serialization NDIF uses, but on this machine, with the small default model (that is how this
# notebook runs in CI, without a network). Set `REMOTE = True` and an NDIF API key
# (`NDIF_API_KEY`, from https://login.ndif.us) to run section 3 on `NDIF_MODEL` on NDIF's GPUs.
# Checks against the local model only run in local mode.

# %%
import json
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

import interp_widgets as iw
from interp_widgets.dictionaries import detect_format
from interp_widgets.models.loading import default_cache_path

REMOTE = "local"                       # "local": simulate NDIF here; True: run on NDIF
NDIF_MODEL = "meta-llama/Llama-3.1-8B"  # a model NDIF hosts (used when REMOTE is True)
work = Path(tempfile.mkdtemp(prefix="iw_own_"))
model = iw.load_model()

# %% [markdown]
# ## 1. Bring your own Hugging Face folder
#
# A model folder is what `save_pretrained` writes (and `huggingface-cli download` fetches):
# `config.json`, weights as `*.safetensors`, and the tokenizer files. `iw.load_model(folder)`
# loads it behind nnsight with the same named sites; pickle (`.bin`) weights are refused. The
# default model's own cache is such a folder, so we link its files into a folder of our own
# (a stand-in for your download) and load it: same weights, identical logits. The folder's name
# becomes `model.name`, which dictionaries are checked against.

# %%
cache = default_cache_path()
folder = work / "SmolLM2-135M-Instruct"
folder.mkdir()
for f in cache.iterdir():
    if f.suffix in (".json", ".safetensors", ".txt", ".model", ".jinja"):
        (folder / f.name).symlink_to(f)
print(sorted(p.name for p in folder.iterdir()))
mine = iw.load_model(folder)
PROMPT = "The Eiffel Tower is in the city of"
assert mine.name == model.name and mine.n_layers == 30
assert torch.equal(mine.run_with_cache(PROMPT, sites=[])[0], model.run_with_cache(PROMPT, sites=[])[0])
mine

# %% [markdown]
# Other families load the same way. A tiny Qwen2 (random weights, built in process, saved with
# `save_pretrained`) shows the round trip for a second architecture: its site map follows the
# family (`model.spec`), so `resid_post.1` and `mlp_out.1` mean the same thing everywhere.

# %%
tiny = iw.load_model("tiny-qwen2")
tiny.hf.save_pretrained(work / "tiny-qwen2")
tiny.tokenizer.save_pretrained(work / "tiny-qwen2")
tiny_again = iw.load_model(work / "tiny-qwen2")
assert tiny_again.family == "qwen2" and torch.allclose(
    tiny_again.run_with_cache("Hello world", sites=["resid_post.1"])[1]["resid_post.1"],
    tiny.run_with_cache("Hello world", sites=["resid_post.1"])[1]["resid_post.1"], atol=1e-5)
tiny_again.spec

# %% [markdown]
# ## 2. SAEs in SAELens format
#
# SAELens (and Neuronpedia's downloads) store an SAE as a folder with `cfg.json` and
# `sae_weights.safetensors` (`W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `b_enc`, `b_dec`), the
# site named by a TransformerLens hook. To keep this notebook offline we *write* one: a
# two-feature "SAE" whose features are the two sides of the France-vs-Japan direction (a ReLU of
# the projection, centred between the two sets of prompts by `b_dec`). A folder you downloaded
# loads with the same line. Loading checks the sizes
# and the model name against the model, maps `blocks.12.hook_resid_post` to our `resid_post.12`
# and reads safetensors only.

# %%
FRANCE = ["I love France and its capital Paris.", "The French city of Paris has the Eiffel Tower.",
          "We flew to Paris, France, for the holidays.", "French food in Paris is wonderful."]
JAPAN = ["I love Japan and its capital Tokyo.", "The Japanese city of Tokyo has the Skytree.",
         "We flew to Tokyo, Japan, for the holidays.", "Japanese food in Tokyo is wonderful."]
france = iw.directions.from_contrast(model, FRANCE, JAPAN, "resid_post.12")
W_dec = torch.stack([france.direction, -france.direction])   # [d_sae=2, d_in]
middle = iw.feature_activations(model, france, FRANCE + JAPAN).to_pandas(include_sinks=False)["activation"].mean()
sae_folder = work / "france-japan-sae"
sae_folder.mkdir()
save_file({"W_enc": W_dec.T.contiguous(), "W_dec": W_dec, "b_enc": torch.zeros(2),
           "b_dec": float(middle) * france.direction}, str(sae_folder / "sae_weights.safetensors"))
(sae_folder / "cfg.json").write_text(json.dumps({
    "architecture": "standard", "d_in": model.d_model, "d_sae": 2, "dtype": "float32",
    "apply_b_dec_to_input": True, "normalize_activations": "none",
    "metadata": {"model_name": "HuggingFaceTB/SmolLM2-135M-Instruct",
                 "hook_name": "blocks.12.hook_resid_post", "context_size": 1024, "prepend_bos": False},
}, indent=1))

sae = iw.load_dictionary(sae_folder, model=mine)
sae.set_label(0, "France (vs Japan)")
sae.set_label(1, "Japan (vs France)")
assert detect_format(sae_folder) == "saelens" and str(sae.site) == "resid_post.12"
sae

# %% [markdown]
# It is an ordinary dictionary now: feature activations, dashboards and the panels take it. On
# `I spent a week in Paris` feature 0 ("France") fires at ` Paris`; on the Tokyo sentence
# feature 1 ("Japan") fires at ` Tokyo`. Its labels were saved to `labels.json` beside the
# SAELens files.

# %%
pair = ["I spent a week in Paris", "I spent a week in Tokyo"]
acts = iw.feature_activations(mine, sae, pair)
assert acts.top_features(-1, prompt=0)["feature"].iloc[0] == 0
assert acts.top_features(-1, prompt=1)["feature"].iloc[0] == 1
assert json.loads((sae_folder / "labels.json").read_text())["0"] == "France (vs Japan)"
panel = iw.FeaturePanel(mine, sae, prompt=pair[0])
panel

# %% [markdown]
# ## 3. The same code on NDIF
#
# With `remote=True`, nnsight sends each trace to NDIF, where the model's weights live; only the
# values you `.save()` come back. Everything in this package that touches the model goes through
# nnsight traces, so the calls below are the same for the 135M model here and an 8B model there:
# a concept direction, the logit lens and steered generation (its strength relative to the
# site's typical norm, so it means the same on both). Building an attribution graph needs
# gradients through a frozen copy of the model, so that runs locally.
#
# In local mode the results are exactly those of the ordinary local model.

# %%
remote = iw.load_model(NDIF_MODEL if REMOTE is True else None, remote=REMOTE)
site = f"resid_post.{int(0.4 * remote.n_layers)}"      # resid_post.12 on SmolLM2's 30 layers
concept = iw.directions.from_contrast(remote, FRANCE, JAPAN, site, label="France (vs Japan)")
lens = iw.LogitLens(remote, PROMPT)
push = iw.Steer(concept, 0.45, units="relative")       # 0.45 x the site's typical norm (~140 here)
steered = iw.steer(remote, push).generate("The best way to learn a new language is", max_new_tokens=8)
print(remote, lens.result.top_tokens[-1][-1][:3], steered, sep="\n")
if REMOTE == "local":
    local = iw.steer(model, iw.Steer(france, 0.45, units="relative")).generate(
        "The best way to learn a new language is", max_new_tokens=8)
    assert torch.equal(concept.direction, france.direction)
    assert lens.result.top_tokens[-1][-1][0] == " Paris"
    assert steered.steered.tokens == local.steered.tokens and steered.baseline.tokens == local.baseline.tokens
lens

# %% [markdown]
# ## Exercises
#
# 1. Which TransformerLens hook name does SAELens use for our site `mlp_out.3`? (`answer_1`;
#    hint: `iw.dictionaries.formats.hook_from_site`)
# 2. How many layers does the tiny Qwen2 folder model have? (`answer_2`, an int)
# 3. Which feature of the hand-written SAE fires most at the last token of
#    `"We landed in Tokyo"`? (`answer_3`, 0 or 1)
#
# Replace each `...`, run the cell, then the hidden check cell below it (it holds the solutions).

# %%
answer_1 = ...
answer_2 = ...
answer_3 = ...

# %% tags=["check"] jupyter={"source_hidden": true}
# Checks (and solutions) for the exercises.
from interp_widgets.dictionaries.formats import hook_from_site

landed = int(iw.feature_activations(mine, sae, ["We landed in Tokyo"]).top_features(-1)["feature"].iloc[0])


def check_1(answer):
    assert answer == hook_from_site("mlp_out.3"), f"{answer!r}: hook_from_site('mlp_out.3')"


def check_2(answer):
    assert answer == tiny_again.n_layers, f"{answer!r}: tiny_again.n_layers"


def check_3(answer):
    assert answer == landed, f"{answer!r}: feature_activations(...).top_features(-1)"


CHECKS = {1: (check_1, hook_from_site("mlp_out.3"), "blocks.3.hook_mlp_in"),
          2: (check_2, tiny_again.n_layers, tiny_again.n_layers + 1), 3: (check_3, landed, 1 - landed)}
iw.check_exercises(CHECKS, globals())
