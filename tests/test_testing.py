"""portable_rnn.testing catches what it promises to catch."""

import numpy as np
import pytest

from portable_rnn.testing import (
    TOLERANCES,
    assert_close,
    available_backends,
    check_gradients,
    tolerances,
)


@pytest.mark.forward
def test_assert_close_checks_backend_shape_dtype_device_then_values(xp):
    a = xp.asarray(np.ones((2, 3)))
    assert_close(a, np.ones((2, 3)), xp=xp, device=xp.array_device)
    other = np if xp.backend != "numpy" else pytest.importorskip("array_api_strict")
    with pytest.raises(AssertionError, match="expected a .* array, got a"):
        assert_close(a, np.ones((2, 3)), xp=other)
    with pytest.raises(AssertionError, match=r"shape \(2, 3\) != expected \(3, 2\)"):
        assert_close(a, np.ones((3, 2)), xp=xp)
    with pytest.raises(AssertionError, match="dtype .* != expected float32"):
        assert_close(a, np.ones((2, 3)), xp=xp, dtype="float32")
    with pytest.raises(AssertionError, match="device .* != expected"):
        assert_close(a, np.ones((2, 3)), xp=xp, device="elsewhere")
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        assert_close(a, np.ones((2, 3)) + 1e-9, xp=xp)
    with pytest.raises(AssertionError, match="expected an array"):
        assert_close([1.0], np.ones(1))


def test_tolerances_come_from_one_table():
    assert tolerances(np.float32) == TOLERANCES["float32"]
    assert tolerances("float64") == TOLERANCES["float64"]
    with pytest.raises(ValueError, match="no tolerance for dtype"):
        tolerances("int8")


def test_check_gradients_catches_a_wrong_gradient():
    w = np.array([1.0, -2.0, 0.5])

    def loss(v):
        return float(np.sum(np.sin(v["w"]) * v["w"]))

    right = np.sin(w) + w * np.cos(w)
    errors = check_gradients(loss, {"w": w}, {"w": right})
    assert errors["w"] < 1e-8
    with pytest.raises(AssertionError, match="gradient 'w' vs central differences"):
        check_gradients(loss, {"w": w}, {"w": right * 1.001})
    with pytest.raises(AssertionError, match="has shape"):
        check_gradients(loss, {"w": w}, {"w": right[:2]})


def test_available_backends_lists_reasons():
    listed = available_backends(include_unavailable=True)
    names = [b.name for b, _ in listed]
    assert names[:2] == ["numpy", "numpy:readonly"]
    assert all(why is None or isinstance(why, str) for _, why in listed)
    assert [b.name for b in available_backends()] == [b.name for b, why in listed if why is None]


def test_select_backends_names_what_is_wrong():
    from portable_rnn.testing import BACKEND_NAMES, select_backends

    assert [b.name for b, _ in select_backends(None)] == list(BACKEND_NAMES)
    ((numpy_backend, why),) = select_backends(["numpy"])
    assert numpy_backend.name == "numpy" and why is None
    with pytest.raises(
        ValueError, match="unknown backend[(]s[)] tpu; known: numpy, numpy:readonly"
    ):
        select_backends(["numpy", "tpu"])
    unavailable = [b.name for b, why in select_backends(None) if why]
    if unavailable:
        with pytest.raises(
            ValueError, match=f"requested backend[(]s[)] cannot run: {unavailable[0]}"
        ):
            select_backends([unavailable[0]])


def test_strictest_turns_every_optional_feature_of_the_standard_off():
    strict = pytest.importorskip("array_api_strict")
    from portable_rnn.testing import Backend

    b = Backend("array_api_strict:strictest", "array_api_strict", "cpu")
    before = strict.get_array_api_strict_flags()
    with b.settings():
        flags = strict.get_array_api_strict_flags()
        assert flags["boolean_indexing"] is False
        assert flags["data_dependent_shapes"] is False
        assert tuple(flags["enabled_extensions"]) == ()
        x = b.asarray([1.0, 2.0])
        with pytest.raises(RuntimeError, match="boolean_indexing"):
            x[x > 1.0]
    assert strict.get_array_api_strict_flags() == before  # restored on exit
    with Backend("array_api_strict", "array_api_strict", "cpu").settings():
        assert strict.get_array_api_strict_flags() == before  # the plain variant changes nothing


@pytest.mark.forward
def test_the_xp_fixture_runs_each_backend_under_its_settings(xp):
    strict = pytest.importorskip("array_api_strict")
    flags = strict.get_array_api_strict_flags()
    assert (flags["data_dependent_shapes"] is False) is xp.strictest
    assert (flags["boolean_indexing"] is False) is xp.strictest
    if xp.backend == "dask":
        import dask

        assert dask.config.get("scheduler") == "synchronous"


def test_only_dask_is_forward_only_and_says_why():
    from portable_rnn.testing import Backend

    for name, backend, device in (("numpy", "numpy", "cpu"), ("torch:gpu", "torch", "gpu:0")):
        assert Backend(name, backend, device).forward_only is None
    why = Backend("dask", "dask", "cpu").forward_only
    assert why.startswith("forward only (tests marked forward)") and "graph" in why
