"""Sampling text from a character model, with a host-side NumPy generator."""

from __future__ import annotations

import numpy as np

from .._backend.devices import to_numpy as _to_numpy
from .._backend.seam import compile_function
from ._model import describe_model, init_char_state, logits_function, to_device_like
from ._text import Vocabulary

__all__ = ["MAX_SAMPLE_LENGTH", "sample"]

#: The most characters one call of `sample` generates (about a minute and a half for the
#: default model on a laptop CPU, where a character takes about a millisecond).
MAX_SAMPLE_LENGTH = 100_000
# exp(-746) is 0 in float64: scores further below the best than this are dropped
_EXP_FLOOR = -746.0


def check_sampling(length, temperature, prime) -> None:
    """Refuse bad arguments of `sample` that need no vocabulary (the command checks them first)."""
    if (
        isinstance(length, bool)
        or not isinstance(length, (int, np.integer))
        or not 0 <= length <= MAX_SAMPLE_LENGTH
    ):
        raise ValueError(f"length must be an int in [0, {MAX_SAMPLE_LENGTH}], got {length!r}")
    if not (
        isinstance(temperature, (int, float))
        and not isinstance(temperature, bool)
        and temperature >= 0
        and np.isfinite(temperature)
    ):
        raise ValueError(
            f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}"
        )
    if prime is not None and not isinstance(prime, str):
        raise TypeError(f"prime must be a str, got {type(prime).__name__}")


def check_prime(vocab, prime) -> None:
    """Refuse a ``prime`` with characters not in ``vocab``, naming them."""
    missing = vocab.missing(prime or "")
    if missing:
        raise ValueError(f"prime has characters not in the vocabulary: {missing!r}")


def sample(
    params,
    vocab,
    *,
    length=200,
    temperature=1.0,
    prime=None,
    seed=None,
    lines=False,
    nonlinearity="tanh",
) -> str:
    """Generate text, one character at a time.

    The model runs on the backend and device of ``params``; each step's scores
    are copied to the host, divided by ``temperature`` (after subtracting the
    largest, so that no temperature overflows), normalised in float64 and a
    character is drawn with ``numpy.random.default_rng(seed)`` (inverse CDF of
    one uniform draw). So the same parameters and seed give the same text on
    every backend wherever the probabilities agree. As the temperature goes to
    0 the draw becomes greedy: a tiny temperature (``1e-308``) picks the most
    likely character (one of them, drawn uniformly, if several tie). Temperature
    0 is greedy decoding: every step takes the most likely character (the first
    of them if several tie), and the text does not depend on ``seed``.

    Parameters
    ----------
    params : dict
        From `init_char_model` or a checkpoint.
    vocab : Vocabulary
        The model's characters (``len(vocab) == V``).
    length : int, keyword-only
        Characters to generate, at most `MAX_SAMPLE_LENGTH`.
    temperature : float, keyword-only
        Finite and ``>= 0``; below 1 sharpens the distribution, above 1 flattens
        it; 0 is greedy (the argmax at every step, whatever the ``seed``).
    prime : str, optional, keyword-only
        Text to start from (its characters must be in the vocabulary); fed
        through the model first and returned in front of the sample. Default:
        a newline if the vocabulary has one, else a character drawn uniformly
        (the first of the vocabulary at temperature 0).
    seed : int, optional, keyword-only
        Seed of the generator.
    lines : bool, optional, keyword-only
        Start every line from the zero state, as a model trained on lines
        (``TrainConfig.split_lines``) saw them: the state is reset after every
        newline, and only the last line of ``prime`` is fed (after a newline, as
        in training). ``False``: the state runs on through the whole text.
    nonlinearity : {"tanh", "relu"}, optional, keyword-only
        The activation of an RNN model, as it was trained (``TrainConfig.nonlinearity``).

    Returns
    -------
    text : str
        ``prime`` followed by ``length`` generated characters.

    Raises
    ------
    ValueError
        ``temperature`` not finite and >= 0, ``length`` out of range, characters
        of ``prime`` not in the vocabulary (they are named), or a vocabulary that
        does not fit the model.
    """
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"vocab must be a Vocabulary, got {type(vocab).__name__}")
    check_sampling(length, temperature, prime)
    check_prime(vocab, prime)
    spec = describe_model(params)
    if spec["vocab_size"] != len(vocab):
        raise ValueError(
            f"vocab has {len(vocab)} characters but the model has {spec['vocab_size']}"
        )
    rng = np.random.default_rng(seed)
    if prime is None or prime == "":
        if "\n" in vocab.chars:
            prime = "\n"
        else:  # greedy: nothing drawn, the seed changes nothing
            prime = vocab.chars[int(rng.integers(len(vocab))) if temperature else 0]
    newline = vocab.chars.find("\n") if lines else -1  # -1: the state is never reset
    # a model trained on lines read every line after a newline, from the zero state
    context = "\n" + prime.rsplit("\n", 1)[-1] if newline >= 0 else prime
    ids = vocab.encode(context)
    like = params["Wy"]
    step = compile_function(logits_function(nonlinearity), like)
    zeros = state = init_char_state(params, 1)
    if len(ids) > 1:
        _, state = step(params, to_device_like(ids[None, :-1], like), state)
    current = ids[-1]
    out = []
    for _ in range(length):
        logits, state = step(params, to_device_like(np.array([[current]], np.int32), like), state)
        z = _to_numpy(logits).astype(np.float64).reshape(-1)
        if temperature == 0:  # greedy
            current = int(np.argmax(z))
        else:
            cdf = np.cumsum(_weights(z, float(temperature)))
            current = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
            current = min(current, len(vocab) - 1)
        out.append(current)
        if current == newline:
            state = zeros  # the next line starts afresh
    return prime + vocab.decode(out)


def _weights(z, temperature: float):
    """``exp((z - max z) / temperature)``, with no overflow for any temperature > 0.

    Scores more than ``746 * temperature`` below the best get weight 0 (their
    exponential underflows anyway): clamping them first keeps the quotient
    finite when ``temperature`` is tiny.
    """
    shifted = z - z.max()  # <= 0
    return np.exp(np.maximum(shifted, _EXP_FLOOR * temperature) / temperature)
