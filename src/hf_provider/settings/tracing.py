"""`[tracing]` in hfp.toml: OpenTelemetry spans for every request (observability/tracing.py uses it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TracingSettings(BaseModel):
    """`[tracing]`: OpenTelemetry spans for every request, exported with OTLP."""

    model_config = ConfigDict(extra="forbid")

    otlp_endpoint: str | None = Field(
        None,
        description="OTLP collector to export spans to (http://host:4318/v1/traces for http/protobuf, "
        "host:4317 for grpc); None: tracing is off and costs nothing",
    )
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    service_name: str = Field("hf-provider", min_length=1)
    sample_ratio: float = Field(
        1.0, ge=0.0, le=1.0, description="share of new traces recorded; a client's sampled flag is followed"
    )
