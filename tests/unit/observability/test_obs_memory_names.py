"""Memory figures under honest names: measured weights apart from what the budget holds (an estimate)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from hf_provider.observability import queries
from hf_provider.observability.observer import Observer


def test_weights_and_budget_figures_are_separate_and_named_for_what_they_are() -> None:
    # A T5 with 821,760 bytes of weights and ~246 MiB held by the budget for a full batch's working memory.
    obs = Observer(
        home=None, model_bytes=lambda: {"t5": {"weight_bytes": 821_760, "accounted_bytes": 258_900_000}}
    )
    try:
        obs.sample()
        families = {f.name: f for f in text_string_to_metric_families(obs.render_metrics()[0].decode())}
        assert "hfp_model_resident_bytes" not in families  # the old name claimed a measurement it was not
        accounted = families["hfp_model_accounted_bytes"]
        assert "estimated" in accounted.documentation and "not a measurement" in accounted.documentation
        assert accounted.samples[0].value == 258_900_000
        series = queries.series(obs, 60)
        assert [v for v in series["accounted_bytes"]["t5"] if v is not None] == [258_900_000.0]
    finally:
        obs.close()
