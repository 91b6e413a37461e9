"""portable_rnn: vanilla RNN, LSTM and GRU, forward and backward, on any array API backend.

Written once against the Python array API standard (through array-api-compat),
the same functions run on NumPy, CuPy, JAX, PyTorch and array_api_strict
arrays, and return results in the backend, device and dtype of their inputs.

The column dialect (deeplearning.ai): a batch is columns; ``x`` is
``(n_x, m, T_x)``, hidden states ``(n_a, m)``.
"""

from . import _config
from ._column.activations import sigmoid, softmax
from ._column.gru import gru_backward, gru_cell_backward, gru_cell_forward, gru_forward
from ._column.lengths import last_state
from ._column.lstm import lstm_backward, lstm_cell_backward, lstm_cell_forward, lstm_forward
from ._column.rnn import rnn_backward, rnn_cell_backward, rnn_cell_forward, rnn_forward
from ._column.seed000 import LSTMfwdProp, fwdProp, fwdPropSeq, sftmax
from ._column.stacked import multilayer_backward, multilayer_forward
from ._config import Config, config_context, get_config, set_config
from ._creation import (
    init_gru_params,
    init_lstm_params,
    init_multilayer_params,
    init_rnn_params,
    init_state,
    to_backend,
)
from ._layers import GRU, LSTM, RNN, RNNBase
from ._validate import MissingParameterError

__version__ = "0.1.0"

_config.warn_unknown_environment()  # a misspelt PORTABLE_RNN_* variable: warn once

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Config",
    "LSTMfwdProp",
    "MissingParameterError",
    "RNNBase",
    "config_context",
    "fwdProp",
    "fwdPropSeq",
    "get_config",
    "gru_backward",
    "gru_cell_backward",
    "gru_cell_forward",
    "gru_forward",
    "init_gru_params",
    "init_lstm_params",
    "init_multilayer_params",
    "init_rnn_params",
    "init_state",
    "last_state",
    "lstm_backward",
    "lstm_cell_backward",
    "lstm_cell_forward",
    "lstm_forward",
    "multilayer_backward",
    "multilayer_forward",
    "rnn_backward",
    "rnn_cell_backward",
    "rnn_cell_forward",
    "rnn_forward",
    "set_config",
    "sftmax",
    "sigmoid",
    "softmax",
    "to_backend",
]
