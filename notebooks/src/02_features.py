# Source of notebooks/02_features.ipynb: edit here, then run `python scripts/build_notebooks.py`
# (cells: `# %%` code, `# %% [markdown]` text; metadata as key=<json> after the marker).

# %% [markdown]
# # Features and dictionaries
#
# **You will learn**
#
# - what a *feature* is: a direction in the activation space of one site, plus a rule for how
#   strongly it is on at each token;
# - four kinds of dictionary and what each is good for: the MLP's own **neurons**, **contrast
#   directions**, **sparse autoencoders** (SAEs) and **transcoders**;
# - to train a small SAE on your own text, and to measure how well it reconstructs;
# - to read a feature from its **dashboard** (top examples, histogram, promoted tokens), label
#   it, and save the label;
# - the **SAELens** on-disk format, to use SAEs trained elsewhere and share yours.
#
# About two minutes on a laptop CPU. Statements about the model are checked by `assert`s.

# %%
import json
import tempfile
from pathlib import Path

import torch

import interp_widgets as iw
from interp_widgets.dictionaries import detect_format, save_saelens
from interp_widgets.dictionaries.train import evaluate

model = iw.load_model()
work = Path(tempfile.mkdtemp(prefix="iw_features_"))  # a scratch folder for what we save
PROMPT = "The Eiffel Tower is in the city of Paris"
model.to_str_tokens(PROMPT)

# %% [markdown]
# ## 1. A feature is a direction and an encoder
#
# A dictionary for a site (say the MLP output of layer 12) is a list of `n_features` vectors,
# its *decoder rows*, and an *encoder* that says, for each token, how much of each vector the
# site's activation holds. `dictionary[i]` is a `Feature`: `.direction` is its decoder row,
# `.label` a human description, `.site` where it lives. Steering adds decoder rows (notebook
# 03); attribution follows them through the model (notebook 04).
#
# ## 2. Neurons: exact, but not sparse
#
# The MLP's hidden units are a dictionary every model has. Read as a *transcoder* (a
# dictionary that reads the MLP's input `mlp_in.12` and writes its output `mlp_out.12`), the
# neurons reconstruct the MLP exactly: the relative error is at float rounding level (below
# 1e-5). But they are dense: more than 90% of SmolLM2's 1536 layer-12 neurons are non-zero on
# every token (its MLP is SiLU-gated), and one neuron mixes unrelated things. That is why we
# train sparse dictionaries.

# %%
neurons = iw.neuron_basis(model, [12])[12]
_, cache = model.run_with_cache(PROMPT, sites=["mlp_in.12", "mlp_out.12"])
x, y = cache["mlp_in.12"][0], cache["mlp_out.12"][0]
with torch.no_grad():                                 # the neurons are views of the model's weights
    f = neurons.encode(x)                             # [tokens, 1536]
    rel_error = float((neurons.decode(f) - y).norm() / y.norm())
on = float((f != 0).float().mean())
print(f"relative reconstruction error {rel_error:.1e}; {on:.0%} of the neurons are on per token")
assert rel_error < 1e-5 and on > 0.9

# %% [markdown]
# ## 3. Contrast directions: one concept, no training
#
# The difference of the mean activations on two sets of prompts that differ in one concept is a
# quick, readable direction (position 0, SmolLM2's attention sink with a residual norm near
# 24,000, is left out of the means). On a new sentence the projection on a France-minus-Japan
# direction is higher at ` Paris` than at ` Tokyo` in the same place.

# %%
FRANCE = ["I love France and its capital Paris.", "The French city of Paris has the Eiffel Tower.",
          "We flew to Paris, France, for the holidays.", "French food in Paris is wonderful."]
JAPAN = ["I love Japan and its capital Tokyo.", "The Japanese city of Tokyo has the Skytree.",
         "We flew to Tokyo, Japan, for the holidays.", "Japanese food in Tokyo is wonderful."]
france = iw.directions.from_contrast(model, FRANCE, JAPAN, "resid_post.12", label="France (vs Japan)")
pair = ["I spent a week in Paris last summer", "I spent a week in Tokyo last summer"]
acts = iw.feature_activations(model, france, pair)
at_paris = acts.feature_values(0, prompt=0)[acts.str_tokens[0].index(" Paris")]
at_tokyo = acts.feature_values(0, prompt=1)[acts.str_tokens[1].index(" Tokyo")]
print(f"projection at ' Paris' {at_paris:.1f}, at ' Tokyo' {at_tokyo:.1f}")
assert at_paris > at_tokyo
acts.to_pandas().pivot(index="position", columns="prompt", values=["token", "activation"])

# %% [markdown]
# ## 4. Train a sparse autoencoder on your own text
#
# An SAE learns many directions (here 512) for one site, with the rule that only a few fire per
# token. Ours is a *TopK* SAE: exactly `k` features are on at every token. Any text works:
# `iw.Corpus.from_strings([...])`, `.from_files("notes/*.txt")` or `.from_pandas(df, "text")`;
# here a few sentences of our own plus the small sample that ships with the package (Python
# documentation and model-written stories). Every 10th document is held out for evaluation.
# A real SAE sees millions of tokens; 8,000 tokens take about a minute on a laptop CPU, enough
# to beat the simplest baseline (below).

# %%
mine = iw.Corpus.from_strings([
    "Paris is the capital of France. The Eiffel Tower and the Louvre are in Paris.",
    "Tokyo is the capital of Japan. Many people visit Tokyo in spring.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
] * 4, name="my notes")
train, held_out = (mine + iw.Corpus.default()).split(every=10)
sae = iw.train_sae(model, "resid_post.6", train, n_features=512, k=16, max_tokens=8192, seq_len=64,
                   warmup_steps=4, progress=False)
quality = evaluate(model, {"sae": sae}, held_out, max_tokens=2048, seq_len=64, ce=False)["sae"]
print(sae, {k: round(v, 3) for k, v in quality.items() if isinstance(v, float)})

# %% [markdown]
# The *fraction of variance unexplained* (FVU) on held-out text is below 1: the SAE's 16
# features per token reconstruct the activation better than its average would (a good SAE
# reaches 0.1-0.3; train longer for that). L0, the number of features on per token, is 16:
# TopK keeps the 16 largest pre-activations (and would drop any that are negative).

# %%
assert quality["fvu"] < 0.95, quality
sae_acts = iw.feature_activations(model, sae, [PROMPT])
assert 15 <= sae_acts.quality()["l0"].iloc[0] <= 16
paris_pos = sae_acts.str_tokens[0].index(" Paris")
sae_acts.top_features(paris_pos, k=5)

# %% [markdown]
# ## 5. Read a feature: the dashboard
#
# A scan runs held-out text through the model and keeps, for every feature, its top activating
# contexts, a histogram of its activations and how often it fires. The dashboard shows them
# with the tokens the feature's decoder row promotes through the unembedding. Here: the
# strongest feature at ` Paris`. Edit its label in the dashboard, or set it from code. Read the
# examples before you trust a label: after 8,000 tokens of training many features are not yet
# about one thing.

# %%
index = iw.scan(model, sae, held_out, max_tokens=4096, seq_len=64, top_k=8, window=12, progress=False)
feature = int(sae_acts.top_features(paris_pos, k=1)["feature"].iloc[0])
best = index.top_examples(feature, k=1)[0]
assert abs(best.activation - index.max_activation(feature)) < 1e-4  # examples sorted by activation
print(f"feature {feature}: fires on {index.density(feature):.1%} of tokens; best example {best}")
dashboard = iw.FeatureDashboard(sae, feature, index=index, model=model)
assert dashboard.error == ""
dashboard

# %% [markdown]
# ## 6. Labels, saved with the dictionary
#
# `save` writes `config.json`, `weights.safetensors` and `labels.json`. Once a dictionary has a
# folder, every label you set (from code or in a dashboard) is written to `labels.json` at once,
# so it survives a restart.

# %%
folder = sae.save(work / "my_sae")
sae.set_label(feature, "strongest at ' Paris' (first look: see its examples)")
reloaded = iw.load_dictionary(folder)
print(sorted(p.name for p in folder.iterdir()), reloaded[feature].label)
assert reloaded[feature].label == "strongest at ' Paris' (first look: see its examples)"

# %% [markdown]
# ## 7. The SAELens format
#
# SAELens (and Neuronpedia) store an SAE as `cfg.json` + `sae_weights.safetensors`, naming the
# site with a TransformerLens hook: our `resid_post.6` is `blocks.6.hook_resid_post`.
# `iw.load_dictionary(folder)` reads SAELens folders (standard, JumpReLU, TopK, BatchTopK and
# transcoders; weights from safetensors only, never pickle); `save_saelens` writes one, which
# SAELens loads with `SAE.load_from_disk(folder)`. The round trip encodes identically.

# %%
lens_folder = save_saelens(sae, work / "my_sae_saelens")
cfg = json.loads((lens_folder / "cfg.json").read_text())
print(sorted(p.name for p in lens_folder.iterdir()), cfg["architecture"], cfg["metadata"]["hook_name"])
again = iw.load_dictionary(lens_folder, model=model)
assert detect_format(lens_folder) == "saelens" and cfg["metadata"]["hook_name"] == "blocks.6.hook_resid_post"
x6 = model.run_with_cache(PROMPT, sites=["resid_post.6"])[1]["resid_post.6"][0, 1:]
assert (again.encode(x6) - sae.encode(x6)).abs().max() < 1e-4
again

# %% [markdown]
# ## 8. Transcoders and the starter pack
#
# A *transcoder* is a sparse dictionary that reads `mlp_in.L` and writes `mlp_out.L`: a sparse
# stand-in for the MLP, which is what attribution graphs need (notebook 04). The neurons of
# section 2 are an exact but dense one; train sparse ones for several layers at once with
# `iw.train_transcoders(model, [3, 4, 5], corpus, n_features=1024, k=32)`. The package's
# starter pack holds trained transcoders for all 30 layers and SAEs for SmolLM2 (built by
# `scripts/build_starter_pack.py`; its README lists how each was trained and how well it
# reconstructs).

# %%
starter = iw.load_transcoders("starter", model=model)
assert starter.layers == list(range(30)) and str(starter[12].out_site) == "mlp_out.12"
starter, starter[12]

# %% [markdown]
# ## Exercises
#
# 1. How many features of your SAE are on at the ` Paris` token of `PROMPT`? (`answer_1`, an int)
# 2. Which token of `"I spent a week in Tokyo last summer"` has the *lowest* projection on the
#    France direction? (`answer_2`, the token string with its leading space)
# 3. What does `detect_format` return for the folder `save_saelens` wrote? (`answer_3`)
#
# Replace each `...`, run the cell, then the hidden check cell below it (it holds the solutions).

# %%
answer_1 = ...
answer_2 = ...
answer_3 = ...

# %% tags=["check"] jupyter={"source_hidden": true}
# Checks (and solutions) for the exercises.
import numpy as np


on_at_paris = int((sae.encode(x6[paris_pos - 1]) != 0).sum())  # x6 starts at position 1


def check_1(answer):
    assert answer == on_at_paris, f"{answer!r}: count the non-zero entries of sae.encode(x) at that token"


tokyo_values = acts.feature_values(0, prompt=1)
tokyo_lowest = acts.str_tokens[1][1 + int(np.argmin(tokyo_values[1:]))]  # position 0 is the sink


def check_2(answer):
    assert answer == tokyo_lowest, f"{answer!r}: look at acts.feature_values(0, prompt=1) (skip position 0)"


def check_3(answer):
    assert answer == detect_format(lens_folder), f"{answer!r}: call detect_format(lens_folder)"


CHECKS = {1: (check_1, on_at_paris, on_at_paris + 16), 2: (check_2, tokyo_lowest, " summer" if tokyo_lowest != " summer" else " week"),
          3: (check_3, "saelens", "interp_widgets")}
iw.check_exercises(CHECKS, globals())
