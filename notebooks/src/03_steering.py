# Source of notebooks/03_steering.ipynb: edit here, then run `python scripts/build_notebooks.py`
# (cells: `# %%` code, `# %% [markdown]` text; metadata as key=<json> after the marker).

# %% [markdown]
# # Steering: push a concept into the model, or take it out
#
# **You will learn**
#
# - to find a concept direction and check what it reads;
# - the four ways to steer: **add** a direction, **scale** it (0 suppresses it, -1 flips it),
#   **clamp** it to a value, **ablate** it or a whole site;
# - to draw a **dose-response** curve, and to see when steering stops helping;
# - when steering **breaks fluency**, measured by how likely the unsteered model finds the text;
# - the `SteeringPanel`, which does all of this live.
#
# About two minutes on a laptop CPU. Statements about the model are checked by `assert`s.

# %%
import torch

import interp_widgets as iw

model = iw.load_model()
EIFFEL = "The Eiffel Tower is in the city of"
LEARN = "The best way to learn a new language is"


def top_tokens(probs, k=3):
    """The k most likely next tokens with their probabilities."""
    p = probs.topk(k)
    return [(model.tokenizer.decode([int(i)]), round(float(v), 3)) for v, i in zip(p.values, p.indices)]


def next_probs(spec, prompt):
    """Next-token probabilities after ``prompt`` with ``spec`` applied."""
    return iw.steer(model, spec).logits(prompt)[0][-1].softmax(-1)


PARIS, TOKYO = (model.tokenizer.encode(t)[0] for t in (" Paris", " Tokyo"))

# %% [markdown]
# ## 1. A concept direction
#
# The France direction: mean `resid_post.12` activation on sentences about France minus the
# mean on the same sentences about Japan (the attention sink at position 0 left out), scaled to
# unit norm. The projection of each token on it shows what it reads: large on `iffel`, small
# elsewhere (position 0 is the sink: its residual norm is ~24,000, so every projection there is
# large and meaningless).

# %%
FRANCE = ["I love France and its capital Paris.", "The French city of Paris has the Eiffel Tower.",
          "We flew to Paris, France, for the holidays.", "French food in Paris is wonderful."]
JAPAN = ["I love Japan and its capital Tokyo.", "The Japanese city of Tokyo has the Skytree.",
         "We flew to Tokyo, Japan, for the holidays.", "Japanese food in Tokyo is wonderful."]
france = iw.directions.from_contrast(model, FRANCE, JAPAN, "resid_post.12", label="France (vs Japan)")
acts = iw.feature_activations(model, france, [EIFFEL])
projection = {t: round(float(v), 1) for t, v in zip(acts.str_tokens[0][1:], acts.feature_values(0)[1:])}
assert max(projection, key=projection.get) == "iffel", projection
projection

# %% [markdown]
# Its *direct* effect on the output (the unembedding of the direction, through the final norm)
# is not readable: ` Paris` is not among the 10 tokens it promotes most. A direction in the
# middle of the model acts through the layers after it, which is why we test it by steering.

# %%
effects = iw.logit_effects(france, model, k=10)
assert " Paris" not in effects.query("direction == 'up'")["token"].tolist()
effects.query("direction == 'up'")

# %% [markdown]
# ## 2. Adding the concept: a dose-response curve
#
# `steering_sweep` runs many strengths in one batched forward pass and records a metric, here
# the log-probability of ` Paris` as the next token after three unrelated prompts. It rises
# with the strength up to about 64 (the residual stream's typical norm at layer 12 is ~140),
# then falls: by 256 ` Paris` is *less* likely than without steering. Too strong a push moves
# the activations off anything the later layers have seen.

# %%
PROMPTS = [LEARN, "My favourite food is", "I went on holiday to"]
strengths = [0, 16, 32, 48, 64, 96, 128, 192, 256]
sweep = iw.steering_sweep(model, iw.Steer(france, 1.0), strengths, PROMPTS, target=" Paris")
best = strengths[int(sweep.mean.argmax())]
print(sweep)
assert 48 <= best <= 96 and float(sweep.mean[-1]) < float(sweep.baseline.mean())
sweep.figure()

# %% [markdown]
# ## 3. When steering breaks fluency
#
# Now generate. A good check of fluency is how likely the *unsteered* model finds the steered
# text (mean log-probability per token). Without steering it is about -0.7; at 64 the text is
# still English (the next-token distribution moved, the greedy words barely did); at 128 and
# beyond, French-looking fragments (` de`, ` la`, ` le`) appear and the text falls apart,
# more than 2 nats per token less likely. On a 135M model the window between "no visible
# effect" and "broken" is narrow; larger models have a wider one (the "Golden Gate Claude"
# demonstration steered a much larger model).

# %%
gen = iw.steering_sweep(model, iw.Steer(france, 1.0), [0, 32, 64, 128, 256], LEARN,
                        target=" Paris", max_new_tokens=16)
plain = iw.steer(model, iw.Steer(france, 0.0))


def fluency(text):
    """Mean log-prob per token of ``text`` after LEARN under the unsteered model."""
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    logits = plain.logits(LEARN, [ids], steered=False)[0]
    logp = torch.log_softmax(logits[-len(ids) - 1:-1], -1)
    return float(logp[torch.arange(len(ids)), torch.tensor(ids)].mean())


texts = {0: gen.baseline_texts[0], **{s: t[0] for s, t in zip(gen.strengths, gen.texts)}}
scores = {s: round(fluency(t), 2) for s, t in texts.items()}
for s, t in texts.items():
    print(f"{s:>5}: {scores[s]:6.2f}  {t!r}")
french = {" de", " la", " le"}
words = {s: set(model.to_str_tokens(t)) for s, t in texts.items()}
assert scores[0] > -1.0 and scores[128] < scores[0] - 2 and scores[256] < scores[0] - 2
assert not french & words[0] and french & (words[128] | words[256])

# %% [markdown]
# ## 4. Taking the concept out: suppress, clamp, flip
#
# The model puts ` Paris` first after `The Eiffel Tower is in the city of` (p about 0.66).
# Suppressing the France direction (scale 0, i.e. remove its projection) at the prompt's tokens
# (positions 1 onwards; the sink is left alone) is enough to change the answer: ` Tokyo` comes
# first and ` Paris` drops below 0.1. The direction was built as France *minus Japan*, so
# pushing it to the Japan side (clamp to -20, or flip it with scale -1) makes ` Tokyo` the
# answer with p above 0.5. The fact was not erased: it is read off this direction.

# %%
clean = next_probs(iw.Steer(france, 0.0), EIFFEL)
suppressed = next_probs(iw.Steer(france, 0.0, mode="scale", positions=slice(1, None)), EIFFEL)
clamped = next_probs(iw.Steer(france, -20.0, mode="clamp", positions=slice(1, None)), EIFFEL)
print("clean     ", top_tokens(clean), "\nsuppressed", top_tokens(suppressed), "\nclamped   ", top_tokens(clamped))
assert top_tokens(clean)[0][0] == " Paris" and abs(float(clean[PARIS]) - 0.66) < 0.03
assert top_tokens(suppressed)[0][0] == " Tokyo" and float(suppressed[PARIS]) < 0.1
assert top_tokens(clamped)[0][0] == " Tokyo" and float(clamped[TOKYO]) > 0.5

# %% [markdown]
# ## 5. Ablating a whole site
#
# `Steer("mlp_out.12", mode="ablate")` sets the output of layer 12's MLP to zero
# (`ablation="mean"` puts its average instead). The answer survives: ` Paris` stays first with p
# above 0.5. Layer 12's MLP is not where the model keeps this fact; the France direction lives in
# the residual stream, which earlier layers and attention also write to.

# %%
no_mlp = next_probs(iw.Steer("mlp_out.12", mode="ablate"), EIFFEL)
print(top_tokens(no_mlp))
assert top_tokens(no_mlp)[0][0] == " Paris" and float(no_mlp[PARIS]) > 0.5

# %% [markdown]
# ## 6. The steering panel
#
# Everything above, live: one row per intervention with a strength slider, a mode (add / scale /
# clamp / ablate) and positions; baseline and steered text side by side with the differing
# tokens marked and each token's log-probability change; a dose-response button per row. Drag
# the slider to 128 and watch the French fragments appear.

# %%
panel = iw.SteeringPanel(model, prompt="My favourite city is", steers=[iw.Steer(france, 64.0)],
                         max_new_tokens=12)
result = panel.wait(timeout=600)             # the panel generates in a background thread
assert panel.error == "" and panel.steered == list(result.steered.str_tokens[0])
panel

# %% [markdown]
# ## Exercises
#
# 1. At which strength of the sweep in section 2 is the mean log p(` Paris`) highest?
#    (`answer_1`, a number)
# 2. Build an `iw.Steer` that *flips* the France direction (scale -1) at positions 1 onwards
#    (`answer_2`). The check applies it to the Eiffel prompt.
# 3. With your flip applied, which token does the model predict after the Eiffel prompt?
#    (`answer_3`, with its leading space)
#
# Replace each `...`, run the cell, then the hidden check cell below it (it holds the solutions).

# %%
answer_1 = ...
answer_2 = ...
answer_3 = ...

# %% tags=["check"] jupyter={"source_hidden": true}
# Checks (and solutions) for the exercises.
def check_1(answer):
    assert answer == best, f"{answer!r}: look at sweep.mean, one value per strength in `strengths`"


def check_2(answer):
    assert isinstance(answer, iw.Steer), "build it with iw.Steer(france, ..., mode=..., positions=...)"
    assert answer.mode == "scale" and answer.strength == -1.0, f"mode {answer.mode!r}, strength {answer.strength}: flip = scale by -1"
    assert answer.positions == slice(1, None), f"positions {answer.positions!r}: positions 1 onwards is slice(1, None)"
    assert top_tokens(next_probs(answer, EIFFEL))[0][0] == " Tokyo"


flipped_top = top_tokens(next_probs(iw.Steer(france, -1.0, mode="scale", positions=slice(1, None)), EIFFEL))[0][0]


def check_3(answer):
    assert answer == flipped_top, f"{answer!r}: apply the flip with next_probs(...) and look at top_tokens"


CHECKS = {1: (check_1, best, 256),
          2: (check_2, iw.Steer(france, -1.0, mode="scale", positions=slice(1, None)), iw.Steer(france, -1.0, mode="scale")),
          3: (check_3, flipped_top, " Paris")}
iw.check_exercises(CHECKS, globals())
