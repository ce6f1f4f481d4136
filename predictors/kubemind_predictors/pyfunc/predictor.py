"""The MLflow pyfunc predictor: a `RegisteredModel` around `mlflow.pyfunc.load_model`.

This is the only runtime module that imports MLflow, and it uses only MLflow's model loader on
the local folder the storage initializer prepared: no tracking or registry call (design
principle 7). The signature and the served version come from `kubemind-model.json`, so
`/v2/models/NAME/versions/V` is the registry's version V.

Inputs: a model logged with a column-based signature gets a pandas DataFrame with one column
per v2 input (BYTES become `str` for `string` columns); a tensor-based one gets the array (one
unnamed input) or a dict of arrays (named inputs). Outputs: DataFrame columns, a Series, an
ndarray, a list or a dict of arrays become v2 tensors, cast to the registered datatypes.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from kserve.protocol.infer_type import InferRequest, InferResponse

from kubemind.codecs import NumpyOutput
from kubemind.datatypes import BY_NAME
from kubemind.errors import (
    BackendTimeout,
    InternalError,
    InvalidInput,
    KubemindError,
    ModelNotReady,
)
from kubemind.model import TensorSpec
from kubemind_predictors.pyfunc.settings import PyfuncSettings
from kubemind_registry.registered_model import RegisteredModel

logger = logging.getLogger("kubemind.pyfunc")

# MLflow error codes that mean "the input does not fit the model's schema".
_BAD_INPUT_CODES = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST"}


class PyfuncPredictor(RegisteredModel):
    """Serves one MLflow pyfunc model from a registry-initialized folder."""

    platform = "mlflow_pyfunc"

    def __init__(self, settings: PyfuncSettings):
        super().__init__(settings.model_name, settings.model_dir, max_batch_size=settings.max_batch_size)
        self.settings = settings
        self._model: Any = None
        self._columns: dict[str, str] | None = None  # column name -> MLflow type, if columnar
        self._tensor_names: list[str] | None = None  # named tensor inputs, [] for one unnamed
        self._tensor_kinds: dict[str, str] = {}  # tensor input -> numpy dtype kind
        self._executor: ThreadPoolExecutor | None = None
        self._outputs_by_name: dict[str, TensorSpec] = {spec.name: spec for spec in self.outputs}

    # -- lifecycle ------------------------------------------------------------------------------
    def load(self) -> bool:
        import mlflow.pyfunc  # the one runtime import of MLflow: its loader, on a local folder

        try:
            self._model = mlflow.pyfunc.load_model(str(self.model_dir))
        except Exception as exc:
            raise ModelNotReady(
                f"cannot load the MLflow model in {self.model_dir}: {type(exc).__name__}: {exc}"
            ) from exc
        self._read_schema()
        self.ready = True
        return self.ready

    def _read_schema(self) -> None:
        schema = self._model.metadata.get_input_schema()
        if schema is None or not schema.is_tensor_spec():
            # Column-based (or no MLflow schema: the registered v2 inputs are the columns).
            if schema is not None and schema.has_input_names():
                types = schema.input_types()
                self._columns = {
                    str(name): getattr(kind, "name", str(kind))
                    for name, kind in zip(schema.input_names(), types, strict=False)
                }
            else:
                self._columns = {spec.name: "" for spec in self.inputs}
            return
        self._tensor_names = [str(n) for n in schema.input_names()] if schema.has_input_names() else []
        names = self._tensor_names or [spec.name for spec in self.inputs][:1]
        for name, dtype in zip(names, schema.numpy_types(), strict=False):
            self._tensor_kinds[name] = np.dtype(dtype).kind

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self.settings.predict_workers, thread_name_prefix="pyfunc")

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self.ready = False

    async def healthy(self) -> bool:
        return self._model is not None and self._executor is not None

    # -- inference ------------------------------------------------------------------------------
    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        if self._executor is None or self._model is None:
            raise ModelNotReady(f"model '{self.name}' is not started")
        model_input = self.model_input(payload)
        loop = asyncio.get_running_loop()
        try:
            result = await asyncio.wait_for(
                loop.run_in_executor(self._executor, self._predict, model_input),
                timeout=self.settings.predict_timeout_seconds,
            )
        except TimeoutError:
            raise BackendTimeout(
                f"model '{self.name}': predict did not return within"
                f" {self.settings.predict_timeout_seconds}s"
            ) from None
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=self.model_outputs(result),
            model_version=payload.model_version,
        )

    def _predict(self, model_input: Any) -> Any:
        """Runs in the executor: the user's predict, its failures turned into kubemind errors."""
        from mlflow.exceptions import MlflowException

        try:
            return self._model.predict(model_input)
        except MlflowException as exc:
            if exc.error_code in _BAD_INPUT_CODES:
                raise InvalidInput(f"model '{self.name}': {exc.message}") from None
            raise InternalError(f"model '{self.name}': MLflow failed: {exc.message}") from None
        except KubemindError:
            raise
        except Exception as exc:
            logger.error("predict of model %r raised", self.name, exc_info=exc)
            raise InternalError(
                f"model '{self.name}': its predict raised {type(exc).__name__}: {exc}"
            ) from None

    def model_input(self, payload: InferRequest) -> Any:
        """The v2 inputs as what the MLflow model was logged with: a DataFrame, an array or a
        dict of arrays."""
        arrays = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
        if self._columns is not None:
            return self._dataframe(arrays)
        if not self._tensor_names:
            if len(arrays) != 1:
                raise InvalidInput(f"model '{self.name}' takes one input tensor, got {len(arrays)}")
            ((name, array),) = arrays.items()
            return self._tensor(name, array)
        return {name: self._tensor(name, array) for name, array in arrays.items()}

    def _dataframe(self, arrays: dict[str, np.ndarray]) -> pd.DataFrame:
        assert self._columns is not None
        rows: int | None = None
        columns: dict[str, Any] = {}
        for name, array in arrays.items():
            if array.ndim == 2 and array.shape[1] == 1:
                array = array.reshape(-1)
            if array.ndim != 1:
                raise InvalidInput(
                    f"input '{name}': a column takes a 1-D tensor (shape [rows]), got shape {list(array.shape)}"
                )
            if rows is not None and array.shape[0] != rows:
                raise InvalidInput(
                    f"input '{name}': {array.shape[0]} rows, but the other columns have {rows}"
                )
            rows = array.shape[0]
            if array.dtype == object and self._columns.get(name, "") != "binary":
                array = _as_text(name, array)
            columns[name] = array
        # Columns in the order the model was logged with, then any the signature adds.
        order = [c for c in self._columns if c in columns] + [c for c in columns if c not in self._columns]
        return pd.DataFrame({name: columns[name] for name in order})

    def _tensor(self, name: str, array: np.ndarray) -> np.ndarray:
        if array.dtype == object and self._tensor_kinds.get(name, "U") in "UO":
            return _as_text(name, array)
        return array

    def model_outputs(self, result: Any) -> list[NumpyOutput]:
        """What the model's predict returned, as v2 output tensors."""
        named: list[tuple[str, Any]]
        default_names = [spec.name for spec in self.outputs]
        if isinstance(result, pd.DataFrame):
            names = [str(c) for c in result.columns]
            if isinstance(result.columns, pd.RangeIndex) and len(default_names) == len(names):
                names = default_names
            named = [(name, result.iloc[:, index]) for index, name in enumerate(names)]
        elif isinstance(result, pd.Series):
            name = default_names[0] if len(default_names) == 1 else str(result.name or "output")
            named = [(name, result)]
        elif isinstance(result, dict):
            named = [(str(key), value) for key, value in result.items()]
        else:
            named = [(default_names[0] if default_names else "output", result)]
        return [self._output(name, value) for name, value in named]

    def _output(self, name: str, value: Any) -> NumpyOutput:
        if isinstance(value, pd.Series | pd.Index):
            value = value.to_numpy()
        array = np.asarray(value)
        spec = self._outputs_by_name.get(name)
        want = spec.datatype if spec is not None else None
        if want == "BYTES" or array.dtype.kind in "OSU":
            return NumpyOutput(name, _as_bytes(name, array), "BYTES")
        try:
            if want is not None and want != "BF16":
                array = array.astype(BY_NAME[want].numpy, copy=False)
            return NumpyOutput(name, array, want)
        except (TypeError, ValueError, KubemindError) as exc:
            raise InternalError(
                f"model '{self.name}': output '{name}' ({array.dtype}) cannot be sent as"
                f" {want or 'a v2 tensor'}: {exc}"
            ) from None


def _as_text(name: str, array: np.ndarray) -> np.ndarray:
    """BYTES elements -> str (what MLflow's `string` columns and str tensors hold)."""
    try:
        out = np.empty(array.shape, dtype=object)
        out.reshape(-1)[:] = [
            item.decode("utf-8") if isinstance(item, bytes | bytearray) else item
            for item in array.reshape(-1)
        ]
        return out
    except UnicodeDecodeError:
        raise InvalidInput(f"input '{name}': a string column holds non-UTF-8 bytes") from None


def _as_bytes(name: str, array: np.ndarray) -> np.ndarray:
    """str / bytes / other objects -> object array of bytes (v2 BYTES)."""
    out = np.empty(array.shape, dtype=object)
    flat = out.reshape(-1)
    for index, item in enumerate(array.reshape(-1)):
        if isinstance(item, bytes):
            flat[index] = item
        elif item is None or item is pd.NA:
            flat[index] = b""
        else:
            flat[index] = str(item).encode("utf-8")
    return out
