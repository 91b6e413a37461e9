"""The character-level language model of portable_rnn.train: numerics.

- the model's hand-written gradients against central differences (every cell,
  two layers, a carried state) and against ``jax.vjp`` of its forward;
- Adam and clipping against ``torch.optim.Adam`` and ``clip_grad_norm_``;
- 20 training steps against the same model built from ``torch.nn`` modules and
  trained with autograd and ``torch.optim.Adam`` (float64, relative 1e-9);
- the same 20 steps on every backend; ``jax.jit`` steps equal eager ones;
- resume is bit for bit; a checkpoint trained on NumPy runs anywhere; samples
  agree across backends; the batches are what truncated BPTT needs.
"""

import math
import random
import signal
from dataclasses import replace

import numpy as np
import pytest

from portable_rnn import train as tr
from portable_rnn.testing import TRAINING_TOLERANCES, assert_close, check_gradients, to_numpy

CELLS = ["lstm", "gru", "rnn"]
RTOL, ATOL = TRAINING_TOLERANCES
WORDS = (
    "the quick brown fox jumps over a lazy dog while seven wizards quietly hex "
    "jovial bugs and every lisp coder writes (define (f x) (g x)) on tuesdays"
).split()


def _text(n_words=700, seed=0) -> str:
    rng = random.Random(seed)
    lines = []
    while n_words > 0:
        k = min(n_words, rng.randint(4, 12))
        lines.append(" ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + ".")
        n_words -= k
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(_text(), encoding="utf-8")
    return path


def _small(cell="lstm", **kw):
    base = dict(
        cell=cell,
        hidden=12,
        layers=2,
        embed=6,
        seq_len=10,
        batch=3,
        steps=20,
        lr=1e-2,
        clip=1.0,
        eval_every=10,
        sample_length=0,
        seed=0,
        backend="numpy",
        dtype="float64",
    )
    return tr.TrainConfig(**{**base, **kw})


# -- gradients ------------------------------------------------------------------------


def _batch(V, m=3, T_=5, seed=1):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, V, (m, T_)).astype(np.int32),
        rng.integers(0, V, (m, T_)).astype(np.int32),
    )


@pytest.mark.parametrize("cell", CELLS)
def test_model_gradients_match_central_differences(cell):
    V = 9
    params = tr.init_char_model(
        V, cell=cell, hidden=5, layers=2, embed=4, seed=3, backend="numpy", dtype="float64"
    )
    x, y = _batch(V)
    rng = np.random.default_rng(2)
    state = {
        k: 0.5 * rng.standard_normal(v.shape) for k, v in tr.init_char_state(params, 3).items()
    }  # a carried, non-zero state
    loss, grads, new_state = tr.char_model_loss_and_grads(params, x, y, state)
    assert loss.shape == () and 0 < float(loss) < 10
    assert set(new_state) == ({"h", "c"} if cell == "lstm" else {"h"})
    assert list(grads) == list(params)

    def f(p):
        return float(tr.char_model_forward(p, x, y, state)[0])

    errors = check_gradients(f, params, grads, rtol=1e-6, atol=1e-9)
    assert max(errors.values()) < 1e-7


@pytest.mark.parametrize("cell", CELLS)
def test_model_gradients_match_jax_vjp(cell):
    jax = pytest.importorskip("jax")
    params = tr.init_char_model(
        7, cell=cell, hidden=4, layers=2, embed=3, seed=0, backend="jax", dtype="float64"
    )
    x, y = (tr.to_device_like(a, params["Wy"]) for a in _batch(7, m=2, T_=4))
    loss, grads, _ = tr.char_model_loss_and_grads(params, x, y)
    auto = jax.jit(jax.grad(lambda p: tr.char_model_forward(p, x, y)[0]))(params)
    for k in params:
        assert_close(grads[k], auto[k], err_msg=k)


def test_first_loss_is_the_uniform_guess_and_logits_agree_with_the_loss():
    V = 30
    params = tr.init_char_model(V, hidden=16, embed=8, seed=0, backend="numpy", dtype="float64")
    params = {**params, "Wy": 0 * params["Wy"], "by": 0 * params["by"]}
    x, y = _batch(V)
    loss, _, _ = tr.char_model_forward(params, x, y)
    assert abs(float(loss) - math.log(V)) < 1e-12  # zero output layer: uniform
    params = tr.init_char_model(V, hidden=16, embed=8, seed=0, backend="numpy", dtype="float64")
    logits, state = tr.char_model_logits(params, x)
    assert logits.shape == (3, 5, V)
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    ref = -np.take_along_axis(logp, y[..., None], axis=-1).mean()
    assert abs(float(tr.char_model_forward(params, x, y)[0]) - ref) < 1e-12
    assert state["h"].shape == (1, 16, 3)


def test_state_is_carried_across_chunks():
    """Two chunks with the carried state = one chunk of twice the length."""
    params = tr.init_char_model(
        11, cell="lstm", hidden=6, embed=4, seed=1, backend="numpy", dtype="float64"
    )
    x, _ = _batch(11, m=2, T_=8)
    whole, s_whole = tr.char_model_logits(params, x)
    a, s = tr.char_model_logits(params, x[:, :4])
    b, s2 = tr.char_model_logits(params, x[:, 4:], s)
    np.testing.assert_allclose(np.concatenate([a, b], axis=1), whole, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(s2["c"], s_whole["c"], rtol=1e-13, atol=1e-13)


# -- optimizer ---------------------------------------------------------------------------


def test_adam_and_clipping_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal((5,))}
    tparams = [torch.tensor(v, requires_grad=True) for v in params.values()]
    opt = torch.optim.Adam(tparams, lr=0.05, betas=(0.8, 0.95), eps=1e-6)
    state = tr.adam_init(params)
    for step in range(6):
        grads = {k: 3 * rng.standard_normal(v.shape) for k, v in params.items()}
        for t, g in zip(tparams, grads.values(), strict=True):
            t.grad = torch.tensor(g)
        max_norm = 2.0 if step % 2 else 1e3  # clipping on, then off
        tnorm = torch.nn.utils.clip_grad_norm_(tparams, max_norm)
        grads, norm = tr.clip_grad_norm(grads, max_norm)
        assert abs(float(norm) - float(tnorm)) <= 1e-13 * float(tnorm)
        for t, g in zip(tparams, grads.values(), strict=True):
            np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-15, atol=0)
        opt.step()
        params, state = tr.adam_update(params, grads, state, lr=0.05, betas=(0.8, 0.95), eps=1e-6)
        for t, v in zip(tparams, params.values(), strict=True):
            np.testing.assert_allclose(v, t.detach().numpy(), rtol=1e-14, atol=1e-15)
    assert state["step"] == 6


def test_adam_refuses_bad_input_before_any_work():
    p = {"w": np.ones(3)}
    s = tr.adam_init(p)
    with pytest.raises(ValueError, match="grads must have the keys of params"):
        tr.adam_update(p, {"v": np.ones(3)}, s)
    with pytest.raises(ValueError, match=r"grads\['w'\] must have the shape"):
        tr.adam_update(p, {"w": np.ones(4)}, s)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        tr.adam_update(p, {"w": np.ones(3)}, s, lr=0)
    with pytest.raises(ValueError, match="betas"):
        tr.adam_update(p, {"w": np.ones(3)}, s, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="max_norm must be a positive number"):
        tr.clip_grad_norm(p, 0)
    assert s["step"] == 0 and np.all(p["w"] == 1)


# -- training against PyTorch ------------------------------------------------------------


def _torch_losses(torch, config, corpus, params):
    """The same model from torch.nn modules, trained with autograd and torch.optim.Adam."""
    from portable_rnn.interop import to_torch

    text, _ = tr.load_corpus(corpus)
    vocab = tr.Vocabulary.from_text(text)
    train_ids, _ = tr.split_corpus(vocab.encode(text), config.val_fraction)
    batches = tr.TextBatches(train_ids, config.batch, config.seq_len)
    spec = tr.describe_model(params)
    keys = [k for k in params if k.startswith("layer")]
    layers = [
        {k.split(".", 1)[1]: params[k] for k in keys if k.startswith(f"layer{i}.")}
        for i in range(spec["layers"])
    ]
    rnn = to_torch(layers, batch_first=True)
    H = spec["hidden"]
    for name, p in rnn.named_parameters():
        if name.startswith("bias_hh"):
            # ours has one bias per gate (bias_ih + bias_hh, which to_torch puts in bias_ih);
            # training both of PyTorch's would move their sum twice as fast: keep bias_hh at
            # zero, except the GRU's b_hn, which is a parameter of its own (inside r * (...)).
            mask = torch.zeros_like(p)
            if spec["cell"] == "gru":
                mask[2 * H :] = 1
            assert torch.all(p.detach() * (1 - mask) == 0)
            p.register_hook(lambda g, mask=mask: g * mask)
    emb = torch.nn.Embedding(spec["vocab_size"], spec["embed"], dtype=torch.float64)
    lin = torch.nn.Linear(H, spec["vocab_size"], dtype=torch.float64)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(params["embed"]))
        lin.weight.copy_(torch.tensor(params["Wy"]))
        lin.bias.copy_(torch.tensor(params["by"][:, 0]))
    all_params = [*emb.parameters(), *rnn.parameters(), *lin.parameters()]
    opt = torch.optim.Adam(all_params, lr=config.lr, betas=config.betas, eps=config.eps)
    loss_fn = torch.nn.CrossEntropyLoss()
    losses, state = [], None
    for step in range(config.steps):
        j = step % len(batches)
        if j == 0:
            state = None
        x, y = (torch.tensor(a, dtype=torch.int64) for a in batches[j])
        out, state = rnn(emb(x), state)
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        logits = lin(out)
        loss = loss_fn(logits.reshape(-1, spec["vocab_size"]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(all_params, config.clip)
        opt.step()
        losses.append(loss.item())
    return np.array(losses)


@pytest.mark.parametrize("cell", CELLS)
def test_twenty_steps_match_torch_autograd_and_adam(cell, corpus):
    torch = pytest.importorskip("torch")
    config = _small(cell, seq_len=8, batch=4)  # 20 steps wrap around the 17 chunks
    params = tr.init_char_model(
        len(tr.Vocabulary.from_text(tr.load_corpus(corpus)[0])),
        cell=cell,
        hidden=12,
        layers=2,
        embed=6,
        seed=config.seed,
        backend="numpy",
        dtype="float64",
    )
    theirs = _torch_losses(torch, config, corpus, params)
    ours = np.array(tr.fit(config, corpus=corpus).train_loss)
    assert ours.shape == (20,)
    assert theirs[-1] < theirs[0] - 0.3  # it learns
    rel = np.max(np.abs(ours - theirs) / np.abs(theirs))
    assert rel < RTOL, (rel, ours, theirs)


# -- every backend --------------------------------------------------------------------------


def _on(xp, **kw):
    return _small(backend=xp.backend, device=xp.device, **kw)


@pytest.fixture(scope="module")
def numpy_runs(corpus):
    return {cell: tr.fit(_small(cell), corpus=corpus) for cell in CELLS}


@pytest.mark.parametrize("cell", CELLS)
def test_twenty_steps_agree_on_every_backend(xp, cell, corpus, numpy_runs, record_diff):
    ours = tr.fit(_on(xp, cell=cell), corpus=corpus)
    ref = numpy_runs[cell]
    np.testing.assert_allclose(ours.train_loss, ref.train_loss, rtol=RTOL, atol=0)
    np.testing.assert_allclose(
        [v for _, v in ours.val_loss], [v for _, v in ref.val_loss], rtol=RTOL, atol=0
    )
    for k, v in ours.params.items():
        assert_close(
            v, ref.params[k], xp=xp.xp, device=xp.array_device, rtol=RTOL, atol=ATOL, err_msg=k
        )
        record_diff(xp.name, "float64", v, ref.params[k])


def test_resume_is_bit_for_bit(xp, corpus, tmp_path):
    config = _on(xp, cell="lstm", steps=6, eval_every=2, save_every=3)
    whole = tr.fit(config, corpus=corpus, out=tmp_path / "whole.npz")
    tr.fit(_on(xp, cell="lstm", steps=3, eval_every=2), corpus=corpus, out=tmp_path / "a.npz")
    header, arrays = tr.load_checkpoint(tmp_path / "a.npz")
    assert header["step"] == 3 and header["trained_on"] == xp.backend
    resumed = tr.fit(config, corpus=corpus, out=tmp_path / "b.npz", resume=tmp_path / "a.npz")
    assert resumed.step == 6
    assert resumed.train_loss == whole.train_loss  # exactly
    for k in whole.params:
        assert np.array_equal(to_numpy(resumed.params[k]), to_numpy(whole.params[k])), k
    _, b = tr.load_checkpoint(tmp_path / "b.npz")
    _, w = tr.load_checkpoint(tmp_path / "whole.npz")
    for group in ("params", "adam_m", "adam_v", "state"):
        for k in w[group]:
            assert np.array_equal(b[group][k], w[group][k]), (group, k)
    assert np.array_equal(b["history"]["train"], w["history"]["train"])
    # the interrupted run also validated where it stopped (step 3); the rest is the same
    assert np.array_equal(b["history"]["val"][b["history"]["val"][:, 0] != 3], w["history"]["val"])


def test_a_numpy_checkpoint_runs_on_every_backend(xp, corpus, tmp_path):
    tr.fit(_small("gru", steps=5), corpus=corpus, out=tmp_path / "np.npz")
    header, arrays = tr.load_checkpoint(tmp_path / "np.npz")
    vocab = tr.Vocabulary(header["vocab"])
    text, _ = tr.load_corpus(corpus)
    _, val = tr.split_corpus(vocab.encode(text), 0.1)
    batches = tr.TextBatches(val, 3, 10)
    ref = tr.evaluate(arrays["params"], batches)
    import portable_rnn as prnn

    params = prnn.to_backend(arrays["params"], xp.backend, xp.device)
    assert abs(tr.evaluate(params, batches) - ref) < 1e-12 * ref
    kw = dict(length=60, temperature=0.7, prime="The ", seed=5)
    assert tr.sample(params, vocab, **kw) == tr.sample(arrays["params"], vocab, **kw)
    # and training goes on there, from the NumPy checkpoint
    more = tr.fit(_on(xp, cell="gru", steps=7), corpus=corpus, resume=tmp_path / "np.npz")
    assert more.step == 7 and len(more.train_loss) == 7


def test_jit_steps_equal_eager_steps(corpus):
    jax = pytest.importorskip("jax")
    from portable_rnn._backend.seam import compile_function

    params = tr.init_char_model(
        13, cell="lstm", hidden=5, layers=2, embed=3, seed=0, backend="jax", dtype="float64"
    )
    x, y = (tr.to_device_like(a, params["Wy"]) for a in _batch(13, m=2, T_=6))
    jitted = compile_function(tr.char_model_loss_and_grads, params["Wy"])
    assert jitted is not tr.char_model_loss_and_grads
    assert (
        compile_function(tr.char_model_loss_and_grads, np.ones(1)) is tr.char_model_loss_and_grads
    )
    l1, g1, s1 = tr.char_model_loss_and_grads(params, x, y)
    l2, g2, s2 = jitted(params, x, y)
    assert isinstance(l2, jax.Array)
    assert abs(float(l1) - float(l2)) < 1e-13
    for k in g1:
        assert_close(g2[k], g1[k], rtol=1e-11, atol=1e-13, err_msg=k)
    assert_close(s2["c"], s1["c"], rtol=1e-12, atol=1e-14)


# -- data -----------------------------------------------------------------------------------


def test_batches_are_parallel_streams_for_truncated_bptt():
    ids = np.arange(1000, dtype=np.int32)
    b = tr.TextBatches(ids, batch=4, seq_len=7)
    per_stream = 999 // 4
    assert len(b) == per_stream // 7 and b.characters == len(b) * 28
    x0, y0 = b[0]
    x1, _ = b[1]
    assert x0.shape == (4, 7) and np.array_equal(y0, x0 + 1)
    assert np.array_equal(x1[:, 0], x0[:, -1] + 1)  # chunk 1 continues chunk 0, per stream
    assert np.array_equal(x0[:, 0], np.arange(4) * per_stream)
    with pytest.raises(IndexError):
        b[len(b)]
    with pytest.raises(tr.CorpusError, match="too short"):
        tr.TextBatches(ids[:20], batch=4, seq_len=7)


def test_vocabulary_round_trips_and_names_unknown_characters():
    v = tr.Vocabulary.from_text("hello, world")
    assert v.chars == " ,dehlorw"
    assert v.decode(v.encode("world")) == "world"
    assert v.encode("lol").dtype == np.int32
    with pytest.raises(ValueError, match="'xz'"):
        v.encode("hex z")


def test_default_corpus_is_offline_and_large():
    text, source = tr.load_corpus()
    assert source == tr.DEFAULT_CORPUS
    assert len(text) > 100_000
    train, val = tr.split_corpus(np.arange(1000), 0.1)
    assert len(train) == 900 and len(val) == 100 and val[0] == 900


def test_interrupt_writes_a_checkpoint_of_the_last_completed_step(corpus, tmp_path):
    def interrupt(line):
        if line.startswith("step 2:"):
            raise KeyboardInterrupt

    config = _small(steps=10, eval_every=2, save_every=5)
    with pytest.raises(KeyboardInterrupt):
        tr.fit(config, corpus=corpus, out=tmp_path / "c.npz", log=interrupt)
    header, arrays = tr.load_checkpoint(tmp_path / "c.npz")
    assert header["step"] == 2 and len(arrays["history"]["train"]) == 2
    resumed = tr.fit(config, corpus=corpus, resume=tmp_path / "c.npz")
    assert resumed.train_loss == tr.fit(config, corpus=corpus).train_loss


def test_max_minutes_stops_early_and_validates(corpus):
    result = tr.fit(_small(steps=50, max_minutes=1e-9), corpus=corpus)
    assert result.step == 1 and [s for s, _ in result.val_loss] == [1]


def test_config_refuses_bad_values():
    for kw, word in [
        ({"cell": "transformer"}, "cell"),
        ({"hidden": 0}, "hidden"),
        ({"lr": -1.0}, "lr"),
        ({"clip": -1.0}, "clip"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"max_minutes": 0}, "max_minutes"),
        ({"save_every": 0}, "save_every"),
        ({"eps": 0.0}, "eps"),
        ({"eps": -1e-8}, "eps"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"betas": (-0.1, 0.9)}, "betas"),
        ({"betas": (0.9,)}, "betas"),
        ({"seed": -1}, "seed"),
        ({"sample_length": tr.MAX_SAMPLE_LENGTH + 1}, "sample_length"),
        ({"dtype": "int8"}, "dtype"),
        ({"split_lines": 1}, "split_lines"),
    ]:
        with pytest.raises(ValueError, match=word):
            tr.TrainConfig(**kw)


def test_best_checkpoint_holds_the_lowest_validation_loss(corpus, tmp_path):
    config = _small(steps=12, eval_every=2, lr=0.05)
    result = tr.fit(config, corpus=corpus, out=tmp_path / "c.npz", best_out=tmp_path / "b.npz")
    best_step, best_val = min(result.val_loss, key=lambda sv: sv[1])
    header, arrays = tr.load_checkpoint(tmp_path / "b.npz")
    assert header["step"] == best_step
    assert arrays["history"]["val"][-1, 1] == best_val
    text, _ = tr.load_corpus(corpus)
    vocab = tr.Vocabulary(header["vocab"])
    _, val = tr.split_corpus(vocab.encode(text), config.val_fraction)
    again = tr.evaluate(arrays["params"], tr.TextBatches(val, 3, config.seq_len))
    assert abs(again - best_val) < 1e-12 * best_val


def test_adam_takes_dicts_in_any_key_order():
    """A checkpoint's dicts come back in their own order; only the keys must agree."""
    p = {"a": np.ones(2), "b": np.full(3, 2.0)}
    s = tr.adam_init(p)
    swapped = {"step": 0, "m": {"b": s["m"]["b"], "a": s["m"]["a"]}, "v": s["v"]}
    new, state = tr.adam_update(p, {"b": np.ones(3), "a": -np.ones(2)}, swapped, lr=0.1)
    assert list(new) == ["a", "b"] and list(state["m"]) == ["a", "b"]
    np.testing.assert_allclose(new["a"], 1.1)
    np.testing.assert_allclose(new["b"], 1.9)


def test_interrupt_between_steps_saves_a_consistent_checkpoint(corpus, tmp_path, monkeypatch):
    from portable_rnn.train import _loop

    calls, real = [], _loop.adam_scalars

    def interrupt_at_step_4(step, *args):
        calls.append(step)
        if step == 4:
            raise KeyboardInterrupt
        return real(step, *args)

    monkeypatch.setattr(_loop, "adam_scalars", interrupt_at_step_4)
    config = _small(steps=8, eval_every=100, save_every=100)
    with pytest.raises(KeyboardInterrupt):
        tr.fit(config, corpus=corpus, out=tmp_path / "c.npz")
    monkeypatch.setattr(_loop, "adam_scalars", real)
    header, arrays = tr.load_checkpoint(tmp_path / "c.npz")
    assert header["step"] == 3 and len(arrays["history"]["train"]) == 3
    resumed = tr.fit(config, corpus=corpus, resume=tmp_path / "c.npz")
    assert resumed.train_loss == tr.fit(config, corpus=corpus).train_loss


def test_non_finite_parameters_are_never_saved(corpus, tmp_path, monkeypatch):
    """Finite loss and gradients, but an update that overflows: the save refuses it."""
    from portable_rnn.train import _loop

    real = _loop.adam_scalars

    def overflow_at_step_4(step, *args):
        size, bc2 = real(step, *args)
        return (math.inf if step == 4 else size), bc2

    monkeypatch.setattr(_loop, "adam_scalars", overflow_at_step_4)
    out = tmp_path / "c.npz"
    with pytest.raises(tr.DivergenceError, match="at step 4.*not finite.*keeps step 2") as exc:
        tr.fit(_small(steps=6, eval_every=100, save_every=2), corpus=corpus, out=out)
    assert exc.value.step == 4
    header, arrays = tr.load_checkpoint(out)
    assert header["step"] == 2
    assert all(np.all(np.isfinite(a)) for a in arrays["params"].values())


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")
def test_fit_handles_sigterm_only_while_it_runs(corpus):
    def mine(signum, frame):  # pragma: no cover - never called
        pass

    seen = []
    previous = signal.signal(signal.SIGTERM, mine)
    try:
        tr.fit(_small(steps=2, eval_every=1), corpus=corpus,
               log=lambda line: seen.append(signal.getsignal(signal.SIGTERM)))  # fmt: skip
        assert seen and all(h is not mine and callable(h) for h in seen)
        assert signal.getsignal(signal.SIGTERM) is mine  # restored

        def interrupt(line):
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            tr.fit(_small(steps=2, eval_every=1), corpus=corpus, log=interrupt)
        assert signal.getsignal(signal.SIGTERM) is mine  # also after an interruption
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # an ignored SIGTERM stays ignored
        seen.clear()
        tr.fit(_small(steps=1, eval_every=1), corpus=corpus,
               log=lambda line: seen.append(signal.getsignal(signal.SIGTERM)))  # fmt: skip
        assert seen == [signal.SIG_IGN]
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- training on lines ------------------------------------------------------------------------


def test_the_default_run_keeps_its_losses(corpus):
    """A regression guard: a run on the text as one stream has the losses it had before lines."""
    result = tr.fit(_small(steps=12, eval_every=6), corpus=corpus)
    expected = [
        3.885076391522953, 3.7781992520142196, 3.8457933811540475, 3.7365607324247097,
        3.8187606892340438, 3.755392327659721, 3.7462195409966985, 3.7106155806386454,
        3.6290168037849995, 3.659810277954709, 3.668611902683404, 3.5285466183611685,
    ]  # fmt: skip
    np.testing.assert_allclose(result.train_loss, expected, rtol=1e-12, atol=0)
    val = [v for _, v in result.val_loss]
    np.testing.assert_allclose(val, [3.726933077044062, 3.4877125600794856], rtol=1e-12, atol=0)


def _rows(vocab, batch):
    """Each row of a `LineBatches` batch as (inputs, targets) text, without its padding."""
    x, y, lengths = batch
    return [
        (vocab.decode(a[:k]), vocab.decode(b[:k])) for a, b, k in zip(x, y, lengths, strict=True)
    ]


def test_line_batches_are_the_lines_with_their_newlines():
    text = "ab\n\ncdefg\r\nh"  # an empty line, a CRLF line, a last line without newline
    vocab = tr.Vocabulary.from_text(text)
    ids = vocab.encode(text).astype(np.uint8)
    nl = vocab.chars.index("\n")
    starts, ends = tr.line_spans(ids, nl)
    assert [text[a:b] for a, b in zip(starts, ends, strict=True)] == ["ab", "cdefg\r", "h"]
    # validation order: every sequence once, in the order of the text, the last batch smaller
    b = tr.LineBatches(ids, nl, batch=3, seq_len=4)
    assert (len(b), b.lines, b.sequences, b.characters) == (2, 3, 4, 3 + 7 + 2)
    x, y, lengths = b[0]
    assert x.dtype == y.dtype == lengths.dtype == np.int32 and x.shape == y.shape == (3, 4)
    assert _rows(vocab, b[0]) == [("\nab", "ab\n"), ("\ncde", "cdef"), ("fg\r", "g\r\n")]
    assert lengths.tolist() == [3, 4, 3] and x[0, 3] == y[0, 3] == 0  # padding: index 0
    assert _rows(vocab, b[1]) == [("\nh", "h\n")] and b[1][0].shape == (1, 2)
    with pytest.raises(IndexError):
        b[2]
    # training order: a permutation per pass, drawn from the seed; full batches only
    s = tr.LineBatches(ids, nl, batch=3, seq_len=4, seed=5)
    assert len(s) == 1
    passes = [sorted(_rows(vocab, s.at(p))) for p in range(6)]
    every = sorted(_rows(vocab, b[0]) + _rows(vocab, b[1]))
    assert all(len(set(p)) == 3 and set(p) <= set(every) for p in passes)
    assert len({tuple(p) for p in passes}) > 1  # another order, another remainder
    again = tr.LineBatches(ids, nl, batch=3, seq_len=4, seed=5)
    assert all(
        np.array_equal(a, c) for p in (3, 0) for a, c in zip(s.at(p), again.at(p), strict=True)
    )


def test_line_batches_refuse_a_text_without_lines_or_too_few():
    ids = np.zeros(5, dtype=np.uint8)  # "\n" * 5
    with pytest.raises(tr.CorpusError, match="no non-empty line"):
        tr.LineBatches(ids, 0, batch=2, seq_len=4)
    ids = np.array([1, 0, 1, 0], dtype=np.uint8)  # two lines of one character
    assert len(tr.LineBatches(ids, 0, batch=3, seq_len=4)) == 1
    with pytest.raises(tr.CorpusError, match=r"2 lines make 2 sequences.*fewer than one batch"):
        tr.LineBatches(ids, 0, batch=3, seq_len=4, seed=0)


def _padded(V, lengths, T, seed=0):
    rng = np.random.default_rng(seed)
    m = len(lengths)
    x = rng.integers(0, V, (m, T)).astype(np.int32)
    y = rng.integers(0, V, (m, T)).astype(np.int32)
    return x, y, np.asarray(lengths, dtype=np.int32)


@pytest.mark.parametrize("cell", CELLS)
def test_the_loss_of_padded_lines_is_the_mean_over_their_characters(cell):
    """Each row alone, unpadded: NumPy's log-softmax of its logits, and its gradients."""
    V = 9
    params = tr.init_char_model(
        V, cell=cell, hidden=5, layers=2, embed=4, seed=3, backend="numpy", dtype="float64"
    )
    x, y, lengths = _padded(V, [5, 2, 0, 3], T=5)
    loss, grads, state = tr.char_model_loss_and_grads(params, x, y, None, lengths)
    nll, weighted = [], {k: 0.0 for k in params}
    for j, k in enumerate(lengths.tolist()):
        if k == 0:
            assert all(np.all(state[s][:, :, j] == 0) for s in state)  # it never started
            continue
        logits, alone = tr.char_model_logits(params, x[j : j + 1, :k])
        z = logits[0] - logits[0].max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        nll.extend(-logp[np.arange(k), y[j, :k]])
        _, g, _ = tr.char_model_loss_and_grads(params, x[j : j + 1, :k], y[j : j + 1, :k])
        weighted = {key: weighted[key] + k * g[key] for key in params}
        for s in state:  # the state after the row's own last step
            np.testing.assert_allclose(state[s][:, :, j], alone[s][:, :, 0], rtol=1e-12)
    assert len(nll) == 10
    assert abs(float(loss) - np.mean(nll)) < 1e-12 * np.mean(nll)
    for key in params:
        np.testing.assert_allclose(grads[key], weighted[key] / 10, rtol=1e-10, atol=1e-14)
    # no real step at all: loss 0 and no gradient, not NaN
    loss0, grads0, _ = tr.char_model_loss_and_grads(params, x, y, None, 0 * lengths)
    assert float(loss0) == 0 and all(np.all(g == 0) for g in grads0.values())


def test_padding_changes_nothing():
    """Other characters and targets at the padding, and more padding: the same numbers."""
    V = 11
    params = tr.init_char_model(
        V, cell="lstm", hidden=6, layers=2, embed=3, seed=1, backend="numpy", dtype="float64"
    )
    x, y, lengths = _padded(V, [6, 1, 4], T=6)
    loss, grads, state = tr.char_model_loss_and_grads(params, x, y, None, lengths)
    pad = np.arange(8) >= lengths[:, None]
    for seed in (1, 2):
        x2, y2, _ = _padded(V, lengths, T=8, seed=seed)
        x2[:, :6][~pad[:, :6]], y2[:, :6][~pad[:, :6]] = x[~pad[:, :6]], y[~pad[:, :6]]
        for a, b in ((x2, y2), (x2[:, :6], y2[:, :6])):
            other, g, s = tr.char_model_loss_and_grads(params, a, b, None, lengths)
            assert abs(float(other) - float(loss)) <= 1e-14 * float(loss)
            for key in params:
                np.testing.assert_allclose(g[key], grads[key], rtol=1e-12, atol=1e-15)
            for key in state:
                np.testing.assert_allclose(s[key], state[key], rtol=1e-12, atol=1e-15)
    changed = y.copy()
    changed[0, 5] = (changed[0, 5] + 1) % V  # a real target: the loss must notice
    assert tr.char_model_forward(params, x, changed, None, lengths)[0] != loss


def test_padded_lines_give_the_numpy_numbers_on_every_backend(xp):
    kw = dict(cell="lstm", hidden=4, layers=2, embed=3, seed=2, dtype="float64")
    ref = tr.init_char_model(7, backend="numpy", **kw)
    params = tr.init_char_model(7, backend=xp.backend, device=xp.device, **kw)
    host = _padded(7, [4, 0, 1, 3], T=4)
    loss, grads, state = tr.char_model_loss_and_grads(ref, *host[:2], None, host[2])
    on = [tr.to_device_like(a, params["Wy"]) for a in host]
    l2, g2, s2 = tr.char_model_loss_and_grads(params, on[0], on[1], None, on[2])
    assert abs(float(l2) - float(loss)) < 1e-13
    for k in grads:
        assert_close(g2[k], grads[k], xp=xp.xp, device=xp.array_device, err_msg=k)
    assert_close(s2["c"], state["c"], xp=xp.xp, device=xp.array_device)


def test_jit_lines_step_equals_the_eager_one():
    jax = pytest.importorskip("jax")
    from portable_rnn._backend.seam import compile_function

    kw = dict(cell="gru", hidden=4, layers=2, embed=3, seed=0, dtype="float64")
    ref = tr.init_char_model(7, backend="numpy", **kw)
    params = tr.init_char_model(7, backend="jax", **kw)
    host = _padded(7, [4, 1, 3], T=4)
    loss, grads, _ = tr.char_model_loss_and_grads(ref, *host[:2], None, host[2])
    jitted = compile_function(tr.char_model_loss_and_grads, params["Wy"])
    on = [tr.to_device_like(a, params["Wy"]) for a in host]
    l2, g2, _ = jitted(params, on[0], on[1], None, on[2])
    assert isinstance(l2, jax.Array) and abs(float(l2) - float(loss)) < 1e-13
    for k in grads:
        np.testing.assert_allclose(to_numpy(g2[k]), grads[k], rtol=1e-11, atol=1e-13, err_msg=k)


def test_training_on_lines_learns_validates_and_resumes(corpus, tmp_path):
    config = _small(split_lines=True, batch=4, seq_len=16, lr=2e-2, steps=30, eval_every=10)
    result = tr.fit(config, corpus=corpus, out=tmp_path / "whole.npz")
    losses = np.array(result.train_loss)
    assert losses[-5:].mean() < losses[:5].mean() - 0.4  # it learns
    assert result.val_loss[-1][1] < result.val_loss[0][1]
    header, arrays = tr.load_checkpoint(tmp_path / "whole.npz")
    assert header["config"]["split_lines"] is True and "state" not in arrays
    # validation: the held-out lines (those that start in the last tenth), per character
    text, _ = tr.load_corpus(corpus)
    vocab = tr.Vocabulary(header["vocab"])
    ids = vocab.encode(text)
    starts, ends = tr.line_spans(ids, vocab.chars.index("\n"))
    k = int(np.searchsorted(starts, len(text) - round(0.1 * len(text))))
    held_out = tr.LineBatches(ids, vocab.chars.index("\n"), 4, 16, spans=(starts[k:], ends[k:]))
    nll = chars = 0.0
    for j in range(len(held_out)):
        x, y, lengths = held_out[j]
        for row in range(len(lengths)):
            n = lengths[row]
            loss, _, _ = tr.char_model_forward(
                result.params, x[row : row + 1, :n], y[row : row + 1, :n]
            )
            nll, chars = nll + n * float(loss), chars + n
    assert held_out.characters == chars and abs(nll / chars - result.val_loss[-1][1]) < 1e-12
    # resumed in the same mode (from the checkpoint), the same losses bit for bit
    tr.fit(replace(config, steps=13), corpus=corpus, out=tmp_path / "a.npz")
    resumed = tr.fit(
        tr.TrainConfig.from_checkpoint(tmp_path / "a.npz", steps=30),
        corpus=corpus,
        resume=tmp_path / "a.npz",
    )
    assert resumed.train_loss == result.train_loss
    assert all(np.array_equal(resumed.params[k], result.params[k]) for k in result.params)


def test_a_model_of_lines_samples_every_line_from_the_zero_state():
    import copy

    params = tr.init_char_model(
        5, cell="lstm", hidden=6, embed=3, seed=4, backend="numpy", dtype="float64"
    )
    params["by"][0] += 1.5  # short lines
    params["Wy"] *= 4  # where the state matters
    vocab = tr.Vocabulary("\nabc ")
    n = 40
    text = tr.sample(params, vocab, length=n, prime="ab\nc", seed=9, lines=True)
    assert text.count("\n") > 5
    # the same as sampling each line on its own after a newline, the generator going on
    rng = np.random.default_rng(9)
    ref, prime = "ab\nc", "\nc"
    while len(ref) < 4 + n:
        left = 4 + n - len(ref)
        ahead = tr.sample(params, vocab, length=left, prime=prime, seed=copy.deepcopy(rng))
        ahead = ahead[len(prime) :]
        line = ahead[: ahead.find("\n") + 1] if "\n" in ahead else ahead
        ref += line
        rng.random(len(line))  # the draws of that line
        prime = "\n"
    assert text == ref
    assert tr.sample(params, vocab, length=n, prime="ab\nc", seed=9) != text  # it matters


# -- cell variants: the RNN's relu, dropout between the layers ---------------------------


def test_relu_and_dropout_gradients_match_central_differences():
    """The model's backward with ``nonlinearity="relu"`` and with dropout (its masks fixed
    by the seed) is the gradient of its forward; each option changes the loss."""
    V = 6
    x, y = _batch(V, m=2, T_=4)
    rnn = tr.init_char_model(
        V, cell="rnn", hidden=4, layers=2, embed=3, seed=3, backend="numpy", dtype="float64"
    )
    lstm = tr.init_char_model(
        V, cell="lstm", hidden=4, layers=2, embed=3, seed=3, backend="numpy", dtype="float64"
    )
    for params, kw in [
        (rnn, {"nonlinearity": "relu"}),
        (rnn, {"nonlinearity": "relu", "dropout": 0.4, "seed": 7}),
        (lstm, {"dropout": 0.4, "seed": 7}),
    ]:
        loss, grads, _ = tr.char_model_loss_and_grads(params, x, y, **kw)
        assert float(loss) != float(tr.char_model_forward(params, x, y)[0]), kw

        def f(p, kw=kw):
            return float(tr.char_model_forward(p, x, y, **kw)[0])

        errors = check_gradients(f, params, grads, rtol=1e-6, atol=1e-9)
        assert max(errors.values()) < 1e-7, kw
    # dropout needs its seed; the LSTM has no relu
    with pytest.raises(ValueError, match="seed"):
        tr.char_model_forward(lstm, x, y, dropout=0.4)
    with pytest.raises(ValueError, match="nonlinearity"):
        tr.char_model_forward(lstm, x, y, nonlinearity="relu")


def test_config_of_the_variants():
    assert tr.TrainConfig().nonlinearity == "tanh" and tr.TrainConfig().dropout == 0.0
    assert "nonlinearity" in tr.STRUCTURAL and "dropout" not in tr.STRUCTURAL
    assert tr.TrainConfig(cell="rnn", nonlinearity="relu", dropout=0).dropout == 0.0
    for kw, word in [
        ({"nonlinearity": "relu"}, "nonlinearity"),  # the default cell, lstm
        ({"cell": "gru", "nonlinearity": "relu"}, "nonlinearity"),
        ({"cell": "rnn", "nonlinearity": "sigmoid"}, "nonlinearity"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"dropout": float("nan")}, "dropout"),
        ({"dropout": True}, "dropout"),
    ]:
        with pytest.raises(ValueError, match=word):
            tr.TrainConfig(**kw)


def test_dropout_trains_evaluates_without_it_and_resumes_bit_for_bit(corpus, tmp_path):
    """Masks per step from the run's seed and the step: a resumed run is the whole run;
    validation runs without dropout; one layer has nothing to drop."""
    from portable_rnn.train._runfile import dropout_seed

    kw = dict(cell="gru", steps=4, eval_every=2, hidden=6, embed=4, seq_len=6)
    config = _small(dropout=0.3, **kw)
    whole = tr.fit(config, corpus=corpus, out=tmp_path / "whole.npz")
    assert tr.load_checkpoint(tmp_path / "whole.npz")[0]["config"]["dropout"] == 0.3
    plain = tr.fit(_small(**kw), corpus=corpus)
    assert whole.train_loss[0] != plain.train_loss[0]  # the masks change the first step
    tr.fit(_small(dropout=0.3, **{**kw, "steps": 2}), corpus=corpus, out=tmp_path / "a.npz")
    resumed = tr.fit(config, corpus=corpus, resume=tmp_path / "a.npz")
    assert resumed.train_loss == whole.train_loss  # exactly
    for k in whole.params:
        assert np.array_equal(resumed.params[k], whole.params[k]), k
    # the validation of the last step is the model without dropout
    text, _ = tr.load_corpus(corpus)
    _, val = tr.split_corpus(whole.vocab.encode(text), config.val_fraction)
    batches = tr.TextBatches(val, min(config.batch, (len(val) - 1) // config.seq_len), 6)
    assert tr.evaluate(whole.params, batches) == whole.val_loss[-1][1]
    # one layer: no inputs between layers, nothing changes
    one = dict(kw, layers=1, steps=2)
    assert tr.fit(_small(dropout=0.5, **one), corpus=corpus).train_loss == (
        tr.fit(_small(**one), corpus=corpus).train_loss
    )
    seeds = {dropout_seed(0, k) for k in range(50)} | {dropout_seed(1, k) for k in range(50)}
    assert len(seeds) == 100 and all(0 <= s < 2**31 for s in seeds)


def test_jax_dropout_step_is_traced_once(corpus, monkeypatch):
    """On JAX the step's dropout seed is an argument of the compiled step (a traced int32),
    not a constant of its trace: one trace for every step (a constant would retrace each
    step); the seed of step ``k`` is `dropout_seed` ``(seed, k)``."""
    pytest.importorskip("jax")
    import portable_rnn.train._loop as loop_module

    traces, seeds = [], []  # the training step calls it only while jax.jit traces it
    real_step, real_seed = loop_module.char_model_loss_and_grads, loop_module.dropout_seed

    def counting(*args, **kwargs):
        traces.append(kwargs["seed"])
        return real_step(*args, **kwargs)

    def recording(seed, step):
        seeds.append((seed, step))
        return real_seed(seed, step)

    monkeypatch.setattr(loop_module, "char_model_loss_and_grads", counting)
    monkeypatch.setattr(loop_module, "dropout_seed", recording)
    kw = dict(cell="rnn", nonlinearity="relu", dropout=0.3, hidden=4, embed=3, seq_len=5)
    result = tr.fit(_small(backend="jax", steps=4, eval_every=4, seed=2, **kw), corpus=corpus)
    assert len(result.train_loss) == 4 and seeds == [(2, 0), (2, 1), (2, 2), (2, 3)]
    assert len(traces) == 1, traces
    assert "Tracer" in type(traces[0]).__name__ and str(traces[0].dtype) == "int32"
