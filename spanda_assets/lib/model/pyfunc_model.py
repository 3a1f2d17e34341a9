"""The registered model's pyfunc: MLflow "models from code" (this file is logged with it).

Input: a pandas DataFrame with a `body` column of de-identified text; other columns
are accepted and ignored (the model reads the text only, so a caller with nothing
but text gets the same answer). Output: a DataFrame with one column, `p_urgent`.

The fitted scikit-learn pipeline is an artifact saved with skops, loaded here with
an explicit list of trusted types: a tampered artifact that holds any other type
is refused instead of executed (decision 0029).
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

# Types beyond skops' defaults that the pipeline holds (sklearn's calibration wrappers).
TRUSTED_TYPES = [
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
]


def load_pipeline(path: str) -> Any:
    import skops.io

    untrusted = skops.io.get_untrusted_types(file=path)
    unexpected = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if unexpected:
        raise ValueError(
            f"{path}: the saved pipeline holds types this model never uses: {unexpected}; "
            "refusing to load it (was the artifact replaced?)"
        )
    return skops.io.load(path, trusted=untrusted)


class UrgencyModel(PythonModel):
    def load_context(self, context: Any) -> None:
        self.pipeline = load_pipeline(context.artifacts["pipeline"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        try:
            from spanda_assets.lib.model.features import p_urgent
        except ImportError:  # served without the spanda package: the logged copy
            from features import p_urgent  # type: ignore[no-redef]

        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return pd.DataFrame(
            {"p_urgent": p_urgent(self.pipeline, model_input)}, index=model_input.index
        )


mlflow.models.set_model(UrgencyModel())
