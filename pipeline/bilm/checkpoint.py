"""Saving and restoring a pretraining run: the biLM's variables (and the optimizer's), by name, in one HDF5 file.

Two uses share one writer:

- the *checkpoint* of a running pretraining (float32, optimizer state, stream position in ``state.json``), written
  atomically every few minutes so that a run killed at any point resumes where its last checkpoint stands;
- the *released* biLM that the project ships (``models/bilm-simplewiki-v2/``): the model's variables only, in
  float16, which halves the size and changes the embeddings by far less than training noise.

Variables are stored in the model's own order (the order in which its layers create them, fixed by the options), each
with its Keras path as an attribute for readers; loading checks every shape, so a file from other options or another
vocabulary size is refused with a clear message. Paths themselves cannot be the keys: Keras numbers unnamed layers
per process (``dense_3``), so the same model gets other paths in a process that built models before.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import keras
import numpy as np

from pipeline.logs import atomic_path, get_logger

log = get_logger(__name__)

VARIABLES_FILE = "variables.h5"
STATE_FILE = "state.json"
MODEL_GROUP = "model"
OPTIMIZER_GROUP = "optimizer"
#: Compression of the variables file: float16 weights of a trained model shrink by ~8% more, checkpoints stay fast.
COMPRESSION = "gzip"


class CheckpointError(ValueError):
    """A variables file does not fit the model it is loaded into (other options, other vocabulary size)."""


def variable_key(index: int) -> str:
    """The name of the ``index``-th variable inside the file."""
    return f"{index:04d}"


def write_variables(group: h5py.Group, variables, dtype: str | None) -> None:
    """Each variable as a dataset in order, its path as an attribute; float variables cast to ``dtype`` when given."""
    group.attrs["count"] = len(variables)
    for index, variable in enumerate(variables):
        value = keras.ops.convert_to_numpy(variable)
        if dtype and np.issubdtype(value.dtype, np.floating):
            value = value.astype(dtype)
        dataset = group.create_dataset(variable_key(index), data=value,
                                       compression=COMPRESSION if value.size > 1 else None)
        dataset.attrs["path"] = variable.path


def read_variables(group: h5py.Group, variables, source: Path) -> None:
    """Assign every variable from its dataset; another count or a shape mismatch is a :class:`CheckpointError`."""
    if group.attrs["count"] != len(variables):
        raise CheckpointError(f"{source}: {group.attrs['count']} variables in {group.name}, the model has "
                              f"{len(variables)} (the file comes from a model with other options)")
    for index, variable in enumerate(variables):
        value = group[variable_key(index)][()]
        if tuple(value.shape) != tuple(variable.shape):
            raise CheckpointError(f"{source}: {variable.path} has shape {value.shape}, the model expects "
                                  f"{tuple(variable.shape)} (another vocabulary or other options)")
        variable.assign(value.astype(variable.dtype))


def save_variables(path: Path, model: keras.Model, optimizer: keras.optimizers.Optimizer | None = None,
                   dtype: str | None = None) -> None:
    """Write the model's (and optionally the optimizer's) variables to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            write_variables(handle.create_group(MODEL_GROUP), model.variables, dtype)
            if optimizer is not None:
                write_variables(handle.create_group(OPTIMIZER_GROUP), optimizer.variables, None)


def load_variables(path: Path, model: keras.Model, optimizer: keras.optimizers.Optimizer | None = None) -> None:
    """Read variables written by :func:`save_variables` into a built model (and a built optimizer)."""
    with h5py.File(path, "r") as handle:
        read_variables(handle[MODEL_GROUP], model.variables, path)
        if optimizer is not None and OPTIMIZER_GROUP in handle:
            read_variables(handle[OPTIMIZER_GROUP], optimizer.variables, path)


def save_checkpoint(directory: Path, model: keras.Model, state: dict) -> None:
    """Variables, optimizer state and the run's ``state`` (position in the text, tokens seen) as one atomic
    directory: a kill during the write leaves the previous checkpoint whole."""
    with atomic_path(directory, directory=True) as tmp:
        save_variables(Path(tmp) / VARIABLES_FILE, model, model.optimizer)
        (Path(tmp) / STATE_FILE).write_text(json.dumps(state, indent=1))
    log.info("checkpoint: %s tokens seen, pass %d, %d sentences into it -> %s",
             f"{state['tokens_seen']:,}", state["epoch"] + 1, state["sentences"], directory)


def read_checkpoint_state(directory: Path) -> dict | None:
    """The state of the checkpoint in ``directory``, or None when there is none."""
    state_file = Path(directory) / STATE_FILE
    return json.loads(state_file.read_text()) if state_file.is_file() else None
