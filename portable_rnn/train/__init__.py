"""Train and sample a character-level language model, on any backend, with hand-written gradients.

The model is an embedding, a stack of RNN, LSTM or GRU layers and an affine
output layer with a softmax cross-entropy loss; its backward is the library's
own (no autodiff). The pieces are public so that a user can write their own loop::

    from portable_rnn import train as T

    corpus = T.read_corpus()                       # pydoc_data.topics: offline
    vocab = corpus.vocab                           # corpus.ids: uint8, one per character
    batches = T.TextBatches(corpus.ids, batch=32, seq_len=64)
    params = T.init_char_model(len(vocab), cell="lstm", hidden=256, seed=0)
    opt, state = T.adam_init(params), None
    for j in range(len(batches)):
        x, y = (T.to_device_like(a, params["Wy"]) for a in batches[j])
        loss, grads, state = T.char_model_loss_and_grads(params, x, y, state)
        grads, norm = T.clip_grad_norm(grads, 5.0)
        params, opt = T.adam_update(params, grads, opt, lr=2e-3)
    print(T.sample(params, vocab, length=200, seed=0))

`fit` is that loop with validation, checkpoints, resume and a progress bar; the
``portable-rnn train`` and ``portable-rnn sample`` commands run it. `score` computes a
model's bits per character over a text of any size, read in pieces, on one machine or
on Dask (``portable-rnn score``).
"""

from ._checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    MAX_CHECKPOINT_BYTES,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from ._loop import DivergenceError, TrainResult, evaluate, fit, plot_history
from ._model import (
    char_model_backward,
    char_model_forward,
    char_model_logits,
    char_model_loss_and_grads,
    describe_model,
    init_char_model,
    init_char_state,
    to_device_like,
)
from ._optim import adam_init, adam_update, clip_grad_norm, global_norm
from ._runfile import STRUCTURAL, TrainConfig
from ._sample import MAX_SAMPLE_LENGTH, sample
from ._score import ScoreResult, score
from ._text import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CORPUS,
    Corpus,
    CorpusError,
    LineBatches,
    TextBatches,
    Vocabulary,
    corpus_digest,
    line_spans,
    load_corpus,
    read_corpus,
    split_corpus,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CORPUS",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_CHECKPOINT_BYTES",
    "MAX_SAMPLE_LENGTH",
    "STRUCTURAL",
    "CheckpointError",
    "Corpus",
    "CorpusError",
    "DivergenceError",
    "LineBatches",
    "ScoreResult",
    "TextBatches",
    "TrainConfig",
    "TrainResult",
    "Vocabulary",
    "adam_init",
    "adam_update",
    "char_model_backward",
    "char_model_forward",
    "char_model_logits",
    "char_model_loss_and_grads",
    "clip_grad_norm",
    "corpus_digest",
    "describe_model",
    "evaluate",
    "fit",
    "global_norm",
    "init_char_model",
    "init_char_state",
    "line_spans",
    "load_checkpoint",
    "load_corpus",
    "plot_history",
    "read_corpus",
    "sample",
    "save_checkpoint",
    "score",
    "split_corpus",
    "to_device_like",
]
