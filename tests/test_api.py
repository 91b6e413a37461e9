"""The public API is exactly what __all__ says, and every function is documented."""

import inspect

import portable_rnn as prnn
import portable_rnn.jax as prnn_jax
import portable_rnn.parallel as prnn_parallel
import portable_rnn.testing as prnn_testing
import portable_rnn.torch as prnn_torch
from portable_rnn import interop, rnn_layers, train

SEED_SIGNATURES = {
    "rnn_cell_forward": "(xt, a_prev, parameters)",
    "rnn_forward": "(x, a0, parameters, *, lengths=None, reverse=False)",
    "rnn_cell_backward": "(da_next, cache)",
    "rnn_backward": "(da, caches, *, lengths=None)",
    "lstm_cell_forward": "(xt, a_prev, c_prev, parameters)",
    "lstm_forward": "(x, a0, parameters, *, c0=None, lengths=None, reverse=False)",
    "lstm_cell_backward": "(da_next, dc_next, cache)",
    "lstm_backward": "(da, caches, *, lengths=None)",
    "fwdProp": "(hprev, xt, params)",
    "fwdPropSeq": "(x, h0, params)",
    "LSTMfwdProp": "(X, h0, c0, params)",
}
# the seeds' signatures, and the keyword-only arguments added after them (issue 13's lengths):
# every seed call runs unchanged
CS231N_SIGNATURES = {
    "rnn_step_forward": "(x, prev_h, Wx, Wh, b)",
    "rnn_step_backward": "(dnext_h, cache)",
    "rnn_forward": "(x, h0, Wx, Wh, b, *, lengths=None, nonlinearity='tanh', reverse=False)",
    "rnn_backward": "(dh, cache, *, lengths=None)",
    "lstm_step_forward": "(x, prev_h, prev_c, Wx, Wh, b)",
    "lstm_step_backward": "(dnext_h, dnext_c, cache)",
    "lstm_forward": "(x, h0, Wx, Wh, b, *, lengths=None, reverse=False)",
    "lstm_backward": "(dh, cache, *, lengths=None)",
    "gru_step_forward": "(x, prev_h, Wx, Wh, b, bhn)",
    "gru_forward": "(x, h0, Wx, Wh, b, bhn, *, lengths=None, reset_after=True, reverse=False)",
    "temporal_affine_forward": "(x, w, b)",
    "temporal_affine_backward": "(dout, cache)",
    "temporal_softmax_loss": "(x, y, mask)",
    "word_embedding_forward": "(x, W)",
    "word_embedding_backward": "(dout, cache)",
}


def _public(module):
    """Names a module defines or re-exports from portable_rnn, and its constants."""
    return sorted(
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and not inspect.ismodule(obj)
        and (getattr(obj, "__module__", "").startswith("portable_rnn") or name.isupper())
    )


def test_all_is_the_public_api():
    assert sorted(prnn.__all__) == _public(prnn)
    assert sorted(prnn_testing.__all__) == _public(prnn_testing)
    assert sorted(rnn_layers.__all__) == _public(rnn_layers)
    assert sorted(interop.__all__) == _public(interop)
    assert sorted(train.__all__) == _public(train)
    assert sorted(prnn_jax.__all__) == _public(prnn_jax)
    assert sorted(prnn_torch.__all__) == _public(prnn_torch)
    assert sorted(prnn_parallel.__all__) == _public(prnn_parallel)


def test_seed_signatures_are_kept():
    for name, signature in SEED_SIGNATURES.items():
        assert str(inspect.signature(getattr(prnn, name))) == signature, name
    for name, signature in CS231N_SIGNATURES.items():
        assert str(inspect.signature(getattr(rnn_layers, name))) == signature, name


def test_every_public_function_has_a_numpydoc_docstring_with_shapes():
    modules = (prnn, prnn_testing, rnn_layers, interop, train, prnn_jax, prnn_torch, prnn_parallel)
    for module in modules:
        for name in module.__all__:
            obj = getattr(module, name)
            if not callable(obj) or (inspect.isclass(obj) and issubclass(obj, Exception)):
                continue
            doc = inspect.getdoc(obj) or ""
            assert doc, f"{name} has no docstring"
            if inspect.isfunction(obj) and inspect.signature(obj).parameters:
                assert "Parameters\n----------" in doc, name
    for name in SEED_SIGNATURES:
        doc = inspect.getdoc(getattr(prnn, name))
        assert "Returns\n-------" in doc and "shape (" in doc, name
