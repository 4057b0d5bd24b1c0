"""lmms-eval integration: a registered Allocator and its Qwen-VL backbone as the lmms-eval chat model ``resadapt``,
and ``resadapt benchmark`` (lmms-eval tasks × budgets × methods → one table and a Pareto plot).

lmms-eval finds the model through the ``lmms_eval.models`` entry point in pyproject.toml, which names ``manifest``
below; importing this package stays light (lmms-eval loads every entry point when it starts).
"""

MODEL_ID = "resadapt"


class BenchmarkError(ValueError):
    """A task lmms-eval did not report, or a result without a score."""


def manifest():
    """lmms-eval's registration record: ``--model resadapt`` is the chat model ``resadapt.lmms.model.ResAdapt``."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, chat_class_path="resadapt.lmms.model.ResAdapt")
