"""ONNX both ways: `portable_rnn.interop.to_onnx` / `from_onnx` and ``portable-rnn export``.

Agreement is measured against ONNX Runtime's CPU operators, which run float32 only (the
RNN, LSTM and GRU kernels refuse float64: "does not support double yet"), so those tests
compare a float32 model with `multilayer_forward` run in float64 on the same float32
parameters, to 1e-5. Float64 agreement (to 1e-10) is measured with ONNX's own reference
evaluator (``onnx.reference``), which runs float64 but ignores ``sequence_lens``. Skipped
only when onnx or onnxruntime is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import portable_rnn as pr  # noqa: E402
from portable_rnn import MissingParameterError, multilayer_forward  # noqa: E402
from portable_rnn.interop import from_onnx, to_onnx  # noqa: E402

CELLS = ("rnn", "lstm", "gru")
N_X, H, M, T = 3, 4, 4, 6
LENGTHS = np.array([6, 2, 1, 5], np.int32)  # a full one and short ones
FLOAT32_TOL = 1e-5
FLOAT64_TOL = 1e-10


def params(cell, L=1, bidirectional=False, dtype="float32", seed=0, peepholes=False):
    layers = pr.init_multilayer_params(
        cell,
        N_X,
        H,
        num_layers=L,
        bidirectional=bidirectional,
        seed=seed,
        backend="numpy",
        dtype=dtype,
    )
    rng = np.random.default_rng(seed + 100)
    # spread the weights, so that a wrong gate order or bias block cannot hide in tanh's
    # linear range
    layers = [{k: (v * 2.5).astype(dtype) for k, v in p.items()} for p in layers]
    if peepholes:
        for p in layers:
            for key in ("Pi", "Pf", "Po"):
                p[key] = rng.uniform(-1, 1, (H, 1)).astype(dtype)
    return layers


def inputs(L, D, dtype="float32", seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_X, M, T)).astype(dtype)
    a0 = (0.5 * rng.standard_normal((L * D, H, M))).astype(dtype)
    c0 = (0.5 * rng.standard_normal((L * D, H, M))).astype(dtype)
    return x, a0, c0


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def feeds(cell, x, a0, c0, lengths=None):
    """The model's inputs (time-major) from the column dialect's arrays."""
    f = {"x": np.ascontiguousarray(x.transpose(2, 1, 0))}
    if a0 is not None:
        f["h0"] = np.ascontiguousarray(a0.transpose(0, 2, 1))
        if cell == "lstm":
            f["c0"] = np.ascontiguousarray(c0.transpose(0, 2, 1))
    if lengths is not None:
        f["sequence_lens"] = lengths
    return f


def ours(cell, layers, x, a0, c0, lengths=None, **options):
    """`multilayer_forward` in float64, its outputs in the model's layout."""
    f64 = [{k: v.astype("float64") for k, v in p.items()} for p in layers]
    kw = {} if lengths is None else {"lengths": lengths}
    out, h_n, c_n, _ = multilayer_forward(
        x.astype("float64"),
        f64,
        cell=cell,
        a0=None if a0 is None else a0.astype("float64"),
        c0=None if a0 is None or cell != "lstm" else c0.astype("float64"),
        **options,
        **kw,
    )
    got = [out.transpose(2, 1, 0), h_n.transpose(0, 2, 1)]
    return got + ([c_n.transpose(0, 2, 1)] if c_n is not None else [])


def largest_difference(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b, strict=True):
        assert u.shape == v.shape
    return max(float(np.max(np.abs(u - v), initial=0.0)) for u, v in zip(a, b, strict=True))


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_round_trip_is_bit_for_bit(cell, bidirectional, L, dtype):
    layers = params(cell, L, bidirectional, dtype)
    layers[0][next(iter(layers[0]))][0, 0] = -0.0  # a negative zero survives too
    model = to_onnx(layers, cell=cell, bidirectional=bidirectional, dtype=dtype)
    back, options = from_onnx(model)
    assert options == {"cell": cell, "bidirectional": bidirectional}
    assert len(back) == len(layers)
    for p, q in zip(layers, back, strict=True):
        assert list(q) == list(p)
        for key in p:
            assert q[key].dtype == np.dtype(dtype), key
            assert q[key].shape == p[key].shape, key
            assert q[key].tobytes() == p[key].tobytes(), key


def test_round_trip_of_peepholes_and_options():
    layers = params("lstm", 2, peepholes=True, dtype="float64")
    model = to_onnx(layers, cell="lstm", reverse=True, clip=2.5, input_forget=True, dtype="float64")
    back, options = from_onnx(model)
    assert options == {
        "cell": "lstm",
        "bidirectional": False,
        "reverse": True,
        "clip": 2.5,
        "input_forget": True,
    }
    for p, q in zip(layers, back, strict=True):
        assert sorted(q) == sorted(p)
        assert all(q[k].tobytes() == p[k].tobytes() for k in p)


def test_round_trip_through_a_file(tmp_path):
    layers = params("gru", 2, True)
    path = tmp_path / "gru.onnx"
    onnx.save(to_onnx(layers, cell="gru", bidirectional=True, reset_after=False), path)
    back, options = from_onnx(path)
    assert options == {"cell": "gru", "bidirectional": True, "reset_after": False}
    back2, _ = from_onnx(str(path))
    for p, q, r in zip(layers, back, back2, strict=True):
        assert all(np.array_equal(p[k], q[k]) and np.array_equal(p[k], r[k]) for k in p)


def test_any_backend_and_the_output_layer_is_left_out():
    torch = pytest.importorskip("torch")
    layers = params("lstm", 1)
    moved = [{k: torch.as_tensor(v) for k, v in p.items()} for p in layers]
    moved[0]["Wy"] = torch.zeros(2, H)
    moved[0]["by"] = torch.zeros(2, 1)
    back, _ = from_onnx(to_onnx(moved, cell="lstm"))
    assert sorted(back[0]) == sorted(layers[0])
    assert all(np.array_equal(back[0][k], layers[0][k]) for k in layers[0])


def test_the_model_has_dynamic_time_and_batch():
    model = to_onnx(
        params("lstm", 2, True),
        cell="lstm",
        bidirectional=True,
        initial_state=True,
        variable_lengths=True,
    )
    onnx.checker.check_model(model, full_check=True)

    def dims(values):
        return {
            v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in values
        }

    assert dims(model.graph.input) == {
        "x": ["T", "batch", N_X],
        "h0": [4, "batch", H],
        "c0": [4, "batch", H],
        "sequence_lens": ["batch"],
    }
    assert dims(model.graph.output) == {
        "y": ["T", "batch", 2 * H],
        "h_n": [4, "batch", H],
        "c_n": [4, "batch", H],
    }
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("LSTM") == 2
    s = session(model)
    for t, m in ((1, 1), (9, 3)):  # other sizes than the model was made with
        x = np.zeros((t, m, N_X), np.float32)
        states = np.zeros((4, m, H), np.float32)
        y = s.run(
            ["y"], {"x": x, "h0": states, "c0": states, "sequence_lens": np.full(m, t, np.int32)}
        )[0]
        assert y.shape == (t, m, 2 * H)


# --------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("variable", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS)
def test_onnx_runtime_agrees_with_multilayer_forward(cell, bidirectional, L, variable):
    """ONNX Runtime (float32: its CPU RNN/LSTM/GRU kernels have no float64) against ours
    (float64 of the same float32 parameters), with initial states and, with lengths, padded
    steps. Largest difference measured: 6e-7 (RNN), 3e-7 (LSTM, GRU)."""
    D = 2 if bidirectional else 1
    layers = params(cell, L, bidirectional)
    x, a0, c0 = inputs(L, D)
    lengths = LENGTHS if variable else None
    model = to_onnx(
        layers,
        cell=cell,
        bidirectional=bidirectional,
        initial_state=True,
        variable_lengths=variable,
    )
    got = session(model).run(None, feeds(cell, x, a0, c0, lengths))
    assert got[0].dtype == np.float32
    want = ours(cell, layers, x, a0, c0, lengths, bidirectional=bidirectional)
    assert largest_difference(got, want) < FLOAT32_TOL
    if variable:  # padding is exactly zero in both
        assert np.all(got[0][2:, 1] == 0) and np.all(got[0][1:, 2] == 0)


@pytest.mark.parametrize("cell", CELLS)
def test_an_empty_sequence_ends_in_zero_states_in_onnx_runtime(cell):
    """Where the two differ: an example of length 0 has ``h_n = h0`` in ours (nothing ran)
    and zeros in ONNX Runtime. Its outputs are zero in both, and from zero initial states
    the final states agree too."""
    layers = params(cell, 1)
    x, a0, c0 = inputs(1, 1)
    lengths = np.array([6, 0, 3, 0], np.int32)
    model = to_onnx(layers, cell=cell, initial_state=True, variable_lengths=True)
    got = session(model).run(None, feeds(cell, x, a0, c0, lengths))
    want = ours(cell, layers, x, a0, c0, lengths)
    assert np.all(got[0][:, 1] == 0) and np.all(want[0][:, 1] == 0)
    assert np.all(got[1][:, 1] == 0) and np.array_equal(want[1][:, 1], a0[:, :, 1])
    zero = np.zeros_like(a0)
    got = session(model).run(None, feeds(cell, x, zero, zero, lengths))
    assert largest_difference(got, ours(cell, layers, x, zero, zero, lengths)) < FLOAT32_TOL


@pytest.mark.parametrize("cell", CELLS)
def test_zero_initial_states_without_the_inputs(cell):
    layers = params(cell, 2)
    x, _, _ = inputs(2, 1)
    got = session(to_onnx(layers, cell=cell)).run(None, feeds(cell, x, None, None))
    assert largest_difference(got, ours(cell, layers, x, None, None)) < FLOAT32_TOL


@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS)
def test_float64_models_agree_in_the_reference_evaluator(cell, bidirectional, L):
    """ONNX's reference evaluator runs float64 (not ``sequence_lens``): 1e-10 (measured
    8e-16)."""
    D = 2 if bidirectional else 1
    layers = params(cell, L, bidirectional, "float64")
    x, a0, c0 = inputs(L, D, "float64")
    model = to_onnx(
        layers, cell=cell, bidirectional=bidirectional, initial_state=True, dtype="float64"
    )
    got = ReferenceEvaluator(model).run(None, feeds(cell, x, a0, c0))
    assert got[0].dtype == np.float64
    want = ours(cell, layers, x, a0, c0, bidirectional=bidirectional)
    assert largest_difference(got, want) < FLOAT64_TOL


VARIANTS = [
    ("rnn", {"nonlinearity": "relu"}),
    ("rnn", {"nonlinearity": "relu", "bidirectional": True}),
    ("rnn", {"reverse": True}),
    ("gru", {"reset_after": False}),
    ("gru", {"reset_after": False, "bidirectional": True}),
    ("gru", {"reset_after": False, "reverse": True}),
    ("gru", {"reverse": True}),
    ("lstm", {"peepholes": True}),
    ("lstm", {"peepholes": True, "bidirectional": True}),
    ("lstm", {"clip": 0.7}),
    ("lstm", {"input_forget": True}),
    ("lstm", {"reverse": True, "peepholes": True, "clip": 1.5, "input_forget": True}),
]


@pytest.mark.parametrize("variable", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize(
    ("cell", "options"), VARIANTS, ids=["-".join([c, *map(str, o.values())]) for c, o in VARIANTS]
)
def test_cell_variants_agree_with_onnx_runtime(cell, options, L, variable):
    """The variants both ways: to_onnx's model run in ONNX Runtime (float32) equals
    `multilayer_forward` with the options `from_onnx` reads back from it, to 1e-5 (measured:
    2e-6 for the bidirectional relu RNN, whose states are not bounded by 1; 4e-7 or less for
    the others)."""
    options = dict(options)
    peepholes = options.pop("peepholes", False)
    bidirectional = options.get("bidirectional", False)
    D = 2 if bidirectional else 1
    layers = params(cell, L, bidirectional, peepholes=peepholes)
    x, a0, c0 = inputs(L, D)
    x = 2 * x  # some pre-activations beyond the clip
    lengths = LENGTHS if variable else None
    model = to_onnx(layers, cell=cell, initial_state=True, variable_lengths=variable, **options)
    back, read = from_onnx(model)
    assert read == {"cell": cell, "bidirectional": bidirectional, **options}
    got = session(model).run(None, feeds(cell, x, a0, c0, lengths))
    read.pop("cell")
    want = ours(cell, back, x, a0, c0, lengths, **read)
    assert largest_difference(got, want) < FLOAT32_TOL


# --------------------------------------------------------------------------- hand-built models


def node_model(
    op, inits, attrs, *, n_in=N_X, extra_inputs=(), inputs_=None, elem=TensorProto.FLOAT
):
    """A one-node model: ``x`` -> op -> ``Y``, ``Y_h``, the weights as initializers."""
    names = inputs_ if inputs_ is not None else ["x", "W", "R", "B"][: 1 + len(inits)]
    node = helper.make_node(op, [*names, *extra_inputs], ["Y", "Y_h"], name="rnn0", **attrs)
    graph = helper.make_graph(
        [node],
        "hand",
        [helper.make_tensor_value_info("x", elem, ["T", "batch", n_in])],
        [helper.make_tensor_value_info("Y", elem, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)


def test_a_hand_built_lstm_with_both_biases_and_peepholes():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((1, 4 * H, N_X)).astype(np.float32)
    R = rng.standard_normal((1, 4 * H, H)).astype(np.float32)
    B = rng.standard_normal((1, 8 * H)).astype(np.float32)  # Rb not zero
    P = rng.standard_normal((1, 3 * H)).astype(np.float32)
    model = node_model(
        "LSTM", {"W": W, "R": R, "B": B}, {"hidden_size": H}, extra_inputs=["", "", "", "P"]
    )
    model.graph.initializer.append(numpy_helper.from_array(P, "P"))
    layers, options = from_onnx(model)
    assert options == {"cell": "lstm", "bidirectional": False}
    p = layers[0]
    i, o, f, c = (slice(k * H, (k + 1) * H) for k in range(4))  # ONNX's gate order
    np.testing.assert_array_equal(p["Wf"], np.concatenate([R[0, f], W[0, f]], axis=1))
    np.testing.assert_array_equal(p["Wc"], np.concatenate([R[0, c], W[0, c]], axis=1))
    np.testing.assert_array_equal(p["bo"][:, 0], B[0, o] + B[0, 4 * H :][o])
    np.testing.assert_array_equal(p["Pf"][:, 0], P[0, 2 * H :])
    np.testing.assert_array_equal(p["Po"][:, 0], P[0, H : 2 * H])
    x = np.random.default_rng(4).standard_normal((N_X, M, T)).astype(np.float32)
    got = session(model).run(None, {"x": x.transpose(2, 1, 0).copy()})[0]  # (T, 1, m, H)
    options.pop("cell")
    want = ours("lstm", layers, x, None, None, **options)[0]
    assert largest_difference([got[:, 0]], [want]) < FLOAT32_TOL


@pytest.mark.parametrize("lbr", [None, 0, 1])
def test_a_hand_built_gru_reads_linear_before_reset(lbr):
    rng = np.random.default_rng(5)
    W = rng.standard_normal((1, 3 * H, N_X)).astype(np.float32)
    R = rng.standard_normal((1, 3 * H, H)).astype(np.float32)
    B = rng.standard_normal((1, 6 * H)).astype(np.float32)
    attrs = {} if lbr is None else {"linear_before_reset": lbr}
    layers, options = from_onnx(node_model("GRU", {"W": W, "R": R, "B": B}, attrs))
    # ONNX's default is linear_before_reset=0: reset_after=False
    assert options == {
        "cell": "gru",
        "bidirectional": False,
        **({} if lbr else {"reset_after": False}),
    }
    p = layers[0]
    np.testing.assert_array_equal(p["bn"][:, 0], B[0, 2 * H : 3 * H])
    np.testing.assert_array_equal(p["bhn"][:, 0], B[0, 5 * H :])
    np.testing.assert_array_equal(p["bz"][:, 0], B[0, :H] + B[0, 3 * H : 4 * H])


def test_a_hand_built_rnn_without_bias():
    rng = np.random.default_rng(6)
    W = rng.standard_normal((1, H, N_X)).astype(np.float64)
    R = rng.standard_normal((1, H, H)).astype(np.float64)
    model = node_model("RNN", {"W": W, "R": R}, {"activations": ["Relu"]}, elem=TensorProto.DOUBLE)
    layers, options = from_onnx(model)
    assert options == {"cell": "rnn", "bidirectional": False, "nonlinearity": "relu"}
    assert layers[0]["ba"].dtype == np.float64 and not np.any(layers[0]["ba"])
    np.testing.assert_array_equal(layers[0]["Wax"], W[0])


@pytest.mark.parametrize(
    ("module", "options"),
    [
        ("RNN", {}),
        ("RNN", {"nonlinearity": "relu"}),
        ("LSTM", {}),
        ("GRU", {}),
    ],
)
def test_models_of_torch_onnx_export_read_as_from_torch(module, options):
    """PyTorch's (TorchScript) exporter builds zero initial states with Shape, Gather,
    Expand: from_onnx passes over them and gives `from_torch`'s parameters bit for bit."""
    import io
    import warnings

    torch = pytest.importorskip("torch")
    from portable_rnn.interop import from_torch

    torch.manual_seed(0)
    m = getattr(torch.nn, module)(N_X, H, num_layers=2, bidirectional=True, **options)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation
        torch.onnx.export(m, (torch.zeros(T, 2, N_X),), buffer, dynamo=False, opset_version=17)
    model = onnx.load_from_string(buffer.getvalue())
    assert {"Shape", "Gather", "Expand"} <= {n.op_type for n in model.graph.node}
    layers, read = from_onnx(model)
    assert read == {"cell": module.lower(), "bidirectional": True, **options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # from_torch's own warnings, if any
        want = from_torch(m)
    for p, q in zip(layers, want, strict=True):
        assert list(p) == list(q)
        assert all(p[k].tobytes() == q[k].numpy().tobytes() for k in q)


# --------------------------------------------------------------------------- refusals


def lstm_model(**attrs):
    rng = np.random.default_rng(7)
    inits = {
        "W": rng.standard_normal((1, 4 * H, N_X)).astype(np.float32),
        "R": rng.standard_normal((1, 4 * H, H)).astype(np.float32),
    }
    return node_model("LSTM", inits, attrs)


def with_node(model, node):
    model.graph.node.append(node)
    return model


@pytest.mark.parametrize(
    ("model", "words"),
    [
        (lambda: lstm_model(activations=["HardSigmoid", "Tanh", "Tanh"]), "activations"),
        (lambda: lstm_model(activation_alpha=[1.0]), "activation_alpha"),
        (lambda: lstm_model(layout=1), "layout=1"),
        (lambda: lstm_model(hidden_size=H + 1), "hidden_size=5"),
        (lambda: lstm_model(linear_before_reset=1), "'linear_before_reset'"),
        (
            lambda: node_model(
                "GRU",
                {
                    "W": np.zeros((1, 3 * H, N_X), np.float32),
                    "R": np.zeros((1, 3 * H, H), np.float32),
                },
                {"clip": 1.0},
            ),
            "clip",
        ),
        (
            lambda: node_model(
                "RNN",
                {"W": np.zeros((1, H, N_X), np.float32), "R": np.zeros((1, H, H), np.float32)},
                {"activations": ["Sigmoid"]},
            ),
            "activations",
        ),
        (
            lambda: with_node(lstm_model(), helper.make_node("Sigmoid", ["Y"], ["Z"], name="sig")),
            "operator Sigmoid",
        ),
        (lambda: node_model("LSTM", {}, {}, inputs_=["x", "x", "x"]), "input W"),
        (
            lambda: node_model(
                "RNN",
                {
                    "W": np.zeros((1, H, N_X), np.float32),
                    "R": np.zeros((1, H, H), np.float32),
                    "h": np.zeros((1, 1, H), np.float32),
                },
                {},
                inputs_=["x", "W", "R", "", "", "h"],
            ),
            "input initial_h is stored in the model",
        ),
        (
            lambda: node_model(
                "LSTM",
                {
                    "W": np.zeros((1, 4 * H, N_X), np.float32),
                    "R": np.zeros((1, 4 * H, H + 1), np.float32),
                },
                {},
            ),
            "R has shape",
        ),
        (
            lambda: node_model(
                "LSTM",
                {
                    "W": np.zeros((1, 4 * H, N_X), np.float32),
                    "R": np.zeros((1, 4 * H, H), np.float32),
                    "B": np.zeros((1, 4 * H), np.float32),
                },
                {},
            ),
            "B has shape",
        ),
        (
            lambda: node_model(
                "LSTM",
                {
                    "W": np.zeros((1, 4 * H, N_X), np.float32),
                    "R": np.zeros((1, 4 * H, H), np.float32),
                    "B": np.zeros((1, 8 * H), np.float32),
                    "P": np.zeros((1, 2 * H), np.float32),
                },
                {},
                inputs_=["x", "W", "R", "B", "", "", "", "P"],
            ),
            "P has shape",
        ),
        (
            lambda: node_model(
                "LSTM",
                {
                    "W": np.zeros((2, 4 * H, N_X), np.float32),
                    "R": np.zeros((2, 4 * H, H), np.float32),
                },
                {},
            ),
            "W has shape",
        ),
    ],
)
def test_from_onnx_refuses_what_it_does_not_compute(model, words):
    with pytest.raises(ValueError, match="rnn0|sig") as err:
        from_onnx(model())
    assert words in str(err.value)


def test_from_onnx_refuses_two_kinds_of_operator_and_no_operator():
    first = to_onnx(params("gru", 1), cell="gru")
    second = to_onnx(params("lstm", 1), cell="lstm")
    mixed = onnx.compose.merge_models(
        first, second, io_map=[("y", "x")], prefix1="a.", prefix2="b."
    )
    with pytest.raises(ValueError, match=r"mixes operators \['GRU', 'LSTM'\]"):
        from_onnx(mixed)
    empty = helper.make_model(
        helper.make_graph([], "empty", [], []), opset_imports=[helper.make_opsetid("", 14)]
    )
    with pytest.raises(ValueError, match="no RNN, LSTM or GRU operator"):
        from_onnx(empty)


def test_from_onnx_refuses_layers_with_different_options():
    a = to_onnx(params("lstm", 1), cell="lstm", clip=1.0)
    b = to_onnx(params("lstm", 1, seed=3), cell="lstm")
    b.graph.input[0].type.tensor_type.shape.dim[2].dim_value = H
    for init in b.graph.initializer:
        if init.name == "layer0.W":  # the second layer reads H inputs
            init.CopyFrom(numpy_helper.from_array(np.zeros((1, 4 * H, H), np.float32), init.name))
    stacked = onnx.compose.merge_models(a, b, io_map=[("y", "x")], prefix1="a.", prefix2="b.")
    with pytest.raises(ValueError, match="differ from the first layer's"):
        from_onnx(stacked)


def test_from_onnx_refuses_an_embedding_and_a_stored_initial_state():
    rng = np.random.default_rng(8)
    params = {
        "embed": rng.standard_normal((5, N_X)),
        "Wy": np.zeros((5, H)),
        "by": np.zeros((5, 1)),
    }
    for k, p in enumerate(pr.init_multilayer_params("gru", N_X, H, seed=0, backend="numpy")):
        params.update({f"layer{k}.{key}": v for key, v in p.items()})
    from portable_rnn import _onnx

    with pytest.raises(ValueError, match=r"operator Gather \(not of a shape\)"):
        from_onnx(_onnx.char_model_to_onnx(params, "abcde"))
    model = lstm_model()
    model.graph.node[0].input.extend(["", "", "h"])
    model.graph.initializer.append(numpy_helper.from_array(np.ones((1, 1, H), np.float32), "one"))
    model.graph.initializer.append(numpy_helper.from_array(np.array([1, 2, H]), "shape"))
    model.graph.node.insert(0, helper.make_node("Expand", ["one", "shape"], ["h"], name="fill"))
    with pytest.raises(ValueError, match="input initial_h is stored in the model"):
        from_onnx(model)


def test_from_onnx_refuses_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="model must be an onnx.ModelProto or a path"):
        from_onnx(42)
    with pytest.raises(ValueError, match="is not a file"):
        from_onnx(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\x00 not protobuf" * 10)
    with pytest.raises(ValueError, match="not an ONNX model"):
        from_onnx(junk)


def test_to_onnx_refuses_a_projection_naming_it():
    layers = params("lstm", 1)
    layers[0]["Wp"] = np.zeros((2, H), np.float32)
    with pytest.raises(ValueError, match=r"layers\[0\]\['Wp'\].*proj_size"):
        to_onnx(layers, cell="lstm")


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"cell": "lstmx"}, ValueError, "unknown cell 'lstmx'"),
        ({"dtype": "float16"}, ValueError, "dtype must be one of"),
        ({"opset": 13}, ValueError, r"opset must be in \[14"),
        ({"opset": 17.0}, TypeError, "opset must be an int"),
        ({"reverse": True, "bidirectional": True}, ValueError, "reverse=True is for a uni"),
        ({"nonlinearity": "relu"}, ValueError, "nonlinearity is for cell 'rnn'"),
        ({"reset_after": False}, ValueError, "reset_after is for cell 'gru'"),
        ({"cell": "gru", "clip": 1.0}, ValueError, "clip is for cell 'lstm'"),
        ({"clip": -1.0}, ValueError, "clip must be a finite number > 0"),
        ({"clip": float("inf")}, ValueError, "clip must be a finite number > 0"),
        ({"clip": 1e39}, ValueError, "a float32 attribute"),
        ({"clip": "1"}, TypeError, "clip must be a positive number"),
        ({"input_forget": 1}, TypeError, "input_forget must be True or False"),
        ({"variable_lengths": "yes"}, TypeError, "variable_lengths must be True or False"),
        ({"initial_state": None}, TypeError, "initial_state must be True or False"),
        ({"bidirectional": True}, ValueError, "num_layers \\* 2 dicts"),
    ],
)
def test_to_onnx_refuses_bad_keywords(kwargs, error, words):
    kwargs = {"cell": "lstm", **kwargs}
    with pytest.raises(error, match=words):
        to_onnx(params(kwargs["cell"] if kwargs["cell"] in CELLS else "lstm", 1), **kwargs)


def test_to_onnx_refuses_bad_layers():
    good = params("lstm", 2)
    with pytest.raises(TypeError, match="layers must be a dict or a non-empty list"):
        to_onnx([], cell="lstm")
    with pytest.raises(TypeError, match=r"layers\[1\] must be a dict"):
        to_onnx([good[0], "x"], cell="lstm")
    missing = [dict(good[0]), good[1]]
    del missing[0]["bf"]
    with pytest.raises(MissingParameterError, match="bf"):
        to_onnx(missing, cell="lstm")
    wrong = [good[0], {**good[1], "Wo": np.zeros((H, H + N_X), np.float32)}]
    with pytest.raises(
        ValueError, match=r"layers\[1\]\['Wo'\] has shape \(4, 7\), expected \(4, 8\)"
    ):
        to_onnx(wrong, cell="lstm")
    with pytest.raises(TypeError, match=r"layers\[0\]\['bf'\] must be an array"):
        to_onnx([{**good[0], "bf": [0.0] * H}], cell="lstm")
    peep = params("gru", 1)
    peep[0]["Pi"] = np.zeros((H, 1), np.float32)
    with pytest.raises(ValueError, match="peepholes .* are the LSTM's"):
        to_onnx(peep, cell="gru")
    some = params("lstm", 1)
    some[0]["Pi"] = np.zeros((H, 1), np.float32)
    with pytest.raises(MissingParameterError, match="Pf"):
        to_onnx(some, cell="lstm")


# --------------------------------------------------------------------------- portable-rnn export


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny checkpoints (3 steps on NumPy) of every cell, two layers each, and of an RNN
    of relu (``rnn-relu``)."""
    from portable_rnn.__main__ import main
    from tests.test_train_cli import TINY, make_text

    d = tmp_path_factory.mktemp("export")
    corpus = d / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    made = {}
    for cell in CELLS:
        made[cell] = d / f"{cell}.npz"
        args = ["train", *TINY, "--corpus", str(corpus), "--steps", "3", "--layers", "2"]
        assert main([*args, "--cell", cell, "--out", str(made[cell])]) == 0
    made["rnn-relu"] = d / "rnn-relu.npz"
    relu = ["--cell", "rnn", "--nonlinearity", "relu", "--out", str(made["rnn-relu"])]
    assert main([*args, *relu]) == 0
    return made


def export(*args):
    from portable_rnn.__main__ import main

    return main(["export", *(str(a) for a in args)])


@pytest.mark.parametrize("kind", [*CELLS, "rnn-relu"])
def test_export_gives_the_library_models_next_character_distribution(
    kind, checkpoints, tmp_path, capsys
):
    """ONNX Runtime's ``probs`` of the exported model equals the softmax of
    `char_model_logits` (what ``portable-rnn sample`` draws from) to 1e-5 (float32); the
    state carries over between calls as in the library. Measured (50 steps, 4 streams):
    probabilities 1e-8, logits 2e-7. A relu RNN (its checkpoint's ``nonlinearity``) is
    exported with ``activations=["Relu"]``."""
    from portable_rnn.train import load_checkpoint
    from portable_rnn.train._model import char_model_logits

    cell, _, nonlinearity = kind.partition("-")
    nonlinearity = nonlinearity or "tanh"
    out = tmp_path / "model.onnx"
    assert export("--checkpoint", checkpoints[kind], "--out", out) == 0
    assert ("rnn (relu) layer(s)" in capsys.readouterr().out) == (nonlinearity == "relu")
    header, arrays = load_checkpoint(checkpoints[kind], groups=("params",))
    params = arrays["params"]
    model = onnx.load(out)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["vocab"] == header["vocab"] and meta["cell"] == cell and meta["layers"] == "2"
    assert meta.get("nonlinearity") == (nonlinearity if cell == "rnn" else None)
    recurrent = [n for n in model.graph.node if n.op_type in ("RNN", "LSTM", "GRU")]
    assert len(recurrent) == 2
    if cell == "rnn":
        for node in recurrent:
            acts = next(a for a in node.attribute if a.name == "activations").strings
            assert [a.decode() for a in acts] == [nonlinearity.capitalize()]
    V = len(meta["vocab"])
    rng = np.random.default_rng(0)
    chars = rng.integers(0, V, (3, 11)).astype(np.int64)
    s = session(model)
    zeros = np.zeros((2, 3, 8), np.float32)
    first = {"chars": chars[:, :5], "h0": zeros, **({"c0": zeros} if cell == "lstm" else {})}
    logits1, probs1, *state = s.run(None, first)
    second = {"chars": chars[:, 5:], "h0": state[0], **({"c0": state[1]} if cell == "lstm" else {})}
    logits2, probs2, *_ = s.run(None, second)
    f64 = {k: v.astype(np.float64) for k, v in params.items()}
    want, _ = char_model_logits(f64, chars, nonlinearity=nonlinearity)  # (m, T, V), one run
    got_logits = np.concatenate([logits1, logits2], axis=1)
    got_probs = np.concatenate([probs1, probs2], axis=1)
    assert got_probs.dtype == np.float32 and got_probs.shape == (3, 11, V)
    assert np.max(np.abs(got_probs - softmax(want))) < 1e-5
    assert np.max(np.abs(got_logits - want)) < 1e-5


def test_export_greedy_decoding_gives_the_text_of_sample(checkpoints, tmp_path):
    """Greedy decoding in ONNX Runtime, a character at a time, writes what ``sample`` writes
    at temperature 0."""
    from portable_rnn.train import load_checkpoint
    from portable_rnn.train._sample import sample
    from portable_rnn.train._text import Vocabulary

    out = tmp_path / "model.onnx"
    assert export("--checkpoint", checkpoints["gru"], "--out", out) == 0
    header, arrays = load_checkpoint(checkpoints["gru"], groups=("params",))
    want = sample(arrays["params"], Vocabulary(header["vocab"]), length=40, temperature=0,
                  prime="the fox")  # fmt: skip
    model = onnx.load(out)
    vocab = {p.key: p.value for p in model.metadata_props}["vocab"]
    s = session(model)
    ids = [vocab.index(c) for c in "the fox"]
    h = np.zeros((2, 1, 8), np.float32)
    _, probs, h = s.run(None, {"chars": np.array([ids], np.int64), "h0": h})
    text = "the fox"
    for _ in range(40):
        nxt = int(np.argmax(probs[0, -1]))
        text += vocab[nxt]
        _, probs, h = s.run(None, {"chars": np.array([[nxt]], np.int64), "h0": h})
    assert text == want


def test_export_float64(checkpoints, tmp_path):
    from portable_rnn.train import load_checkpoint
    from portable_rnn.train._model import char_model_logits

    out = tmp_path / "model64.onnx"
    assert export("--checkpoint", checkpoints["rnn"], "--out", out, "--dtype", "float64") == 0
    model = onnx.load(out)
    _, arrays = load_checkpoint(checkpoints["rnn"], groups=("params",))
    f64 = {k: v.astype(np.float64) for k, v in arrays["params"].items()}
    chars = np.array([[1, 2, 3, 4], [5, 6, 7, 0]], np.int64)
    got = ReferenceEvaluator(model).run(["logits"], {"chars": chars, "h0": np.zeros((2, 2, 8))})
    want, _ = char_model_logits(f64, chars)
    assert got[0].dtype == np.float64
    assert np.max(np.abs(got[0] - want)) < FLOAT64_TOL


def one_error(capsys, *words):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("portable-rnn export: error: ")
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_export_bad_input_is_one_line_exit_2_and_nothing_written(checkpoints, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert export("--checkpoint", tmp_path / "missing.npz", "--out", out) == 2
    one_error(capsys, "--checkpoint", "missing.npz", "does not exist")
    assert export("--checkpoint", checkpoints["lstm"], "--out", tmp_path / "no" / "m.onnx") == 2
    one_error(capsys, "--out", "does not exist")
    assert export("--checkpoint", checkpoints["lstm"], "--out", tmp_path) == 2
    one_error(capsys, "--out", "is a directory")
    assert export("--checkpoint", checkpoints["lstm"], "--out", out, "--opset", "13") == 2
    one_error(capsys, "--opset must be in [14")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a checkpoint")
    assert export("--checkpoint", junk, "--out", out) == 2
    one_error(capsys, "--checkpoint", "junk.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.npz"]  # no temporaries either


def test_export_does_not_replace_out_when_it_fails(checkpoints, tmp_path, capsys, monkeypatch):
    from portable_rnn import _onnx

    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous")

    def refuse(params, vocab, **kwargs):
        raise ValueError("params['layer0.Wp']: an LSTM with a projection (proj_size) ...")

    monkeypatch.setattr(_onnx, "char_model_to_onnx", refuse)
    assert export("--checkpoint", checkpoints["lstm"], "--out", out) == 2
    one_error(capsys, "--checkpoint", "cannot be exported", "Wp")
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_a_model_with_a_projection_cannot_be_exported(checkpoints):
    from portable_rnn import _onnx
    from portable_rnn.train import load_checkpoint

    header, arrays = load_checkpoint(checkpoints["lstm"], groups=("params",))
    params = {**arrays["params"], "layer0.Wp": np.zeros((4, 8), np.float32)}
    with pytest.raises(ValueError, match=r"params\['layer0.Wp'\].*proj_size"):
        _onnx.char_model_to_onnx(params, header["vocab"])
    with pytest.raises(ValueError, match=r"params\['embed'\] has shape .* expected"):
        _onnx.char_model_to_onnx(arrays["params"], header["vocab"] + "\x00")
    with pytest.raises(TypeError, match="vocab must be a non-empty str"):
        _onnx.char_model_to_onnx(arrays["params"], "")
    wrong = {**arrays["params"], "layer1.Wo": np.zeros((8, 12), np.float32)}
    with pytest.raises(ValueError, match=r"params\['layer1.Wo'\] has shape \(8, 12\)"):
        _onnx.char_model_to_onnx(wrong, header["vocab"])
