"""Settings: typed, validated, read once (env prefix HFP_, optional hfp.toml) and passed down.

Precedence, highest first: explicit overrides (CLI flags), HFP_ environment variables, the config file, defaults.
Nested fields use a double underscore in the environment: HFP_SERVER__PORT=9000, HFP_MEMORY__HOST_BUDGET=4GiB.
"""

from __future__ import annotations

import contextvars
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from hf_provider.errors import ConfigError
from hf_provider.settings.media import MediaSettings
from hf_provider.settings.pipelines import PipelineSpec
from hf_provider.settings.ray import RaySettings
from hf_provider.settings.tracing import TracingSettings
from hf_provider.spec import ModelSpec, check_fallbacks
from hf_provider.units import GPU_MEMORY, check_size, parse_duration

_FILE_DATA: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "hfp_file_data", default=None
)


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="bind address; loopback unless told otherwise")
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="larger request bodies get 413")
    max_audio_bytes: int = Field(
        25 * 1024 * 1024,
        ge=1024,
        description="larger uploads to /v1/audio/* get 413 (OpenAI's limit is 25 MB); other routes keep "
        "max_body_bytes",
    )
    request_timeout_s: float = Field(
        120.0,
        gt=0,
        description="every request's deadline (a client may shorten it with the header X-Request-Timeout): a "
        "request that would wait longer is refused with 429, one that passes it gets 504",
    )
    loop: Literal["asyncio", "uvloop", "auto"] = Field(
        "asyncio",
        description="event loop: asyncio answers new connections (health probes included) within a fraction of a "
        "second while 1000 clients flood the server; uvloop is faster per request but let a new connection wait "
        "until the flood ended (4-20 s in bench/overload.py)",
    )
    gil_switch_interval_ms: float = Field(
        1.0,
        gt=0,
        le=100,
        description="sys.setswitchinterval for the server process. Python's default (5 ms) lets the event loop, "
        "busy with a burst of requests, hold the GIL so long that a 50 ms forward pass took up to 2 s; at 1 ms "
        "at most 0.35 s",
    )
    shed_loop_lag_s: float = Field(
        0.5, gt=0, description="while the event loop lags more than this, inference requests get 429 at once"
    )
    lag_probe_ms: float | None = Field(
        None,
        gt=0,
        description="for benches: a timer of this period records how late each firing is (the event loop's lag), "
        "served by GET /v1/admin/loop-lag (bench/swap.py sets 5); None: no probe, no route",
    )
    keep_alive_s: int = Field(
        65,
        ge=1,
        description="seconds an idle HTTP connection stays open: longer than the longest Retry-After (60 s), so a "
        "client that waits as told does not send into a connection the server is closing",
    )
    api_key: SecretStr | None = Field(
        None, description="when set, requests need 'Authorization: Bearer <key>'"
    )
    log_level: str = "info"


class MemorySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host_budget: str | int | float | None = Field(
        None, description="bytes ('4GiB', '512MB', an int) or a fraction of RAM (0.8); None: no budget"
    )
    gpu_budget: str | int | float | None = Field(None, description="per GPU, same forms as host_budget")
    min_residency_s: float = Field(10.0, ge=0, description="a model loaded more recently is not evicted")
    load_wait_s: float = Field(60.0, gt=0, description="longest a request waits for its model to load")
    keep_alive_check_s: float = Field(1.0, gt=0, description="how often idle models are looked for")
    freeze_heap: bool | None = Field(
        None,
        description="after each load, move the objects alive (imports, models) out of the garbage collector's "
        "generations so its full passes stay short (gc.freeze; undone and redone at each unload). Process-wide, "
        "so None (the default) means on for the server (`hfp serve`, a Ray replica) and off for a Provider used "
        "as a library, whose host program keeps its own gc state; true or false decides for both",
    )
    fault_inject_oom: str | None = Field(
        None, description="TESTING ONLY: comma-separated batch sizes whose forward raises a real OOM error"
    )

    @field_validator("min_residency_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v

    @field_validator("host_budget", "gpu_budget", mode="before")
    @classmethod
    def _size(cls, v: Any, info: ValidationInfo) -> Any:
        # Checked here, before the union coerces a bool to 1, so a bad size fails at load, not at server start.
        # The value is kept as written: fractions resolve against the machine's totals only when the budget is
        # built.
        if v is not None:
            check_size(v, of="RAM" if info.field_name == "host_budget" else GPU_MEMORY)
        return v


class ReportingSettings(BaseModel):
    """`[reporting]`: grouped, redacted error reports (reporting/), kept in the server's home."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="build error reports (GET /v1/admin/errors, `hfp errors`)")
    retention: str | float = Field(
        "30d", validate_default=True, description="an error group not seen for this long is deleted"
    )
    include_inputs: bool = Field(
        False,
        description="also store a request's inputs in its samples, truncated to 200 characters and masked; off: "
        "a sample holds the inputs' length and a sha256 prefix only",
    )
    max_groups: int = Field(
        1000,
        ge=1,
        description="most error groups kept; a report of a new fingerprint past it is counted in one overflow "
        "group per error class (`overflow:<class>`), so errors.db stays bounded whatever clients send",
    )
    sentry_dsn: SecretStr | None = Field(
        None, description="also send each report to Sentry (needs the `sentry` extra: sentry-sdk)"
    )

    @field_validator("retention")
    @classmethod
    def _retention(cls, v: str | float) -> float:
        return parse_duration(v)


class VersioningSettings(BaseModel):
    """`[versioning]`: swaps, rollbacks and canaries of a model's revision while it serves (lifecycle/)."""

    model_config = ConfigDict(extra="forbid")

    warm_previous: str | float = Field(
        "10m",
        validate_default=True,
        description="after a swap the previous version stays loaded (weights in host memory, within the budget) "
        "this long, so a rollback serves at once; 0 unloads it when it has drained",
    )
    drain_timeout_s: float = Field(
        60.0, gt=0, description="longest a swapped-out version may take to finish its in-flight requests"
    )
    yield_to_requests: bool = Field(
        True,
        description="a swap's load on CPU steps aside for the serving version's forward passes (waits at explicit "
        "points of the load while one runs, at most 50 ms before it runs 10 ms freely), so requests keep their "
        "latency and the swap takes longer; never on CUDA, where a pass runs on the device and continuous "
        "batching leaves no gap to wait for. Off: the load runs at full speed beside the requests",
    )
    canary_abort_margin: float = Field(
        0.05,
        ge=0,
        le=1,
        description="a canary is aborted when the candidate's error rate exceeds the primary's by more than this",
    )
    canary_min_requests: int = Field(
        20, ge=1, description="requests the candidate must have answered before its error rate is judged"
    )

    @field_validator("warm_previous")
    @classmethod
    def _duration(cls, v: str | float) -> float:
        return parse_duration(v)


class FaultRule(BaseModel):
    """TESTING ONLY: one injected fault."""

    model_config = ConfigDict(extra="forbid")

    phase: Literal["parse", "load", "preprocess", "forward", "postprocess"]
    model: str = Field("*", description="a configured model's name, or * for every model")
    exception: str = Field(
        "RuntimeError", description="exception type to raise (resilience/faults.py lists them)"
    )
    rate: float = Field(1.0, ge=0.0, le=1.0, description="share of calls that fail")
    message: str | None = Field(None, description="None: a message with random ids, addresses and paths")


class CacheSettings(BaseModel):
    """`[cache]`: the HF cache the models download into (cache/): a disk budget and file integrity checks."""

    model_config = ConfigDict(extra="forbid")

    disk_budget: str | int | float | None = Field(
        None,
        description="keep the HF cache within this ('20GiB', bytes, or a fraction of the disk such as 0.5): after "
        "each download the least recently used revisions are removed, never one that is loaded, locked or "
        "swapping; None: no budget",
    )
    verify: bool = Field(
        True,
        description="check a model's files (sha256 / ETag, safetensors headers) before each load and download a "
        "bad file again; digests are remembered by (inode, size, mtime), so a warm restart reads no file twice",
    )

    @field_validator("disk_budget", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        if v is not None:
            check_size(v, of="the disk")
        return v


class FaultSettings(BaseModel):
    """`[faults]` TESTING ONLY: raise chosen exceptions in chosen phases of chosen models at chosen rates. When
    the section is present the server also serves POST /v1/admin/faults to change the rules at run time."""

    model_config = ConfigDict(extra="forbid")

    rules: list[FaultRule] = Field(default_factory=list)
    seed: int | None = Field(None, description="seed of the rate's random draws (reproducible tests)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HFP_", env_nested_delimiter="__", extra="forbid")

    home: Path = Field(
        Path.home() / ".cache" / "hf-provider", description="state directory (history, registry)"
    )
    server: ServerSettings = Field(default_factory=ServerSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    metrics_enabled: bool = True
    history_enabled: bool = True
    raw_retention: str | float = Field("1d", description="raw request samples kept this long")
    rollup_retention: str | float = Field("30d", description="one-minute rollups kept this long")
    load_on_start: bool = Field(True, description="load every configured model at start")
    reporting: ReportingSettings = Field(default_factory=ReportingSettings)
    versioning: VersioningSettings = Field(default_factory=VersioningSettings)
    faults: FaultSettings | None = Field(
        None, description="TESTING ONLY: fault injection (and POST /v1/admin/faults); never set in production"
    )
    cache: CacheSettings = Field(default_factory=CacheSettings)
    media: MediaSettings = Field(
        default_factory=MediaSettings, description="limits on image inputs, URL fetching (runtime/media/)"
    )
    tracing: TracingSettings = Field(
        default_factory=TracingSettings,
        description="OpenTelemetry spans (observability/tracing.py); off by default",
    )
    ray: RaySettings = Field(
        default_factory=RaySettings, description="`hfp serve --ray` / `hfp ray config` (scaling/config.py)"
    )
    locked: bool = Field(
        False, description="load exactly the commits and files of the lock file (`hfp serve --locked`)"
    )
    lock_file: Path | None = Field(None, description="hfp.lock; default: beside the config file (`hfp lock`)")
    models: list[ModelSpec] = Field(default_factory=list)
    pipelines: list[PipelineSpec] = Field(
        default_factory=list, description="`[[pipelines]]`: steps over the models, served as one request"
    )

    @field_validator("models")
    @classmethod
    def _fallbacks(cls, v: list[ModelSpec]) -> list[ModelSpec]:
        check_fallbacks(v)
        return v

    @field_validator("raw_retention", "rollup_retention")
    @classmethod
    def _retention(cls, v: str | float) -> float:
        return parse_duration(v)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_source = InitSettingsSource(settings_cls, _FILE_DATA.get() or {})
        return init_settings, env_settings, file_source


def _read_config(config: Path | str | dict[str, Any] | None) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, dict):
        return dict(config)
    path = Path(config)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"config file {str(path)!r} does not exist") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}") from e


def _env_source(loc: tuple[Any, ...], env: Mapping[str, str]) -> str | None:
    """The HFP_ variable that set the field at `loc` (HFP_SERVER__PORT, or HFP_SERVER holding JSON), if any."""
    upper = {k.upper(): k for k in env}  # pydantic-settings reads HFP_ variables case-insensitively
    parts = [str(p).upper() for p in loc]
    for i in range(len(parts), 0, -1):
        name = "HFP_" + "__".join(parts[:i])
        if name in upper:
            return upper[name]
    return None


def format_validation_error(err: ValidationError, where: str, env: Mapping[str, str] | None = None) -> str:
    """One line per bad field, naming where it came from: the HFP_ variable that set it, else `where`."""
    env = os.environ if env is None else env
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(root)"
        var = _env_source(e["loc"], env)
        source = f"environment variable {var}={env[var]!r}" if var else where
        parts.append(f"{loc} (from {source}): {e['msg']}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings(config: Path | str | dict[str, Any] | None = None, **overrides: Any) -> Settings:
    """Read settings once. Raises ConfigError naming the field and the allowed values."""
    data = _read_config(config)
    token = _FILE_DATA.set(data)
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
        if settings.lock_file is None and isinstance(config, Path | str):
            settings.lock_file = Path(config).resolve().parent / "hfp.lock"  # `hfp lock` writes it there
        return settings
    except ValidationError as e:
        where = (
            "the settings passed in" if not isinstance(config, Path | str) else f"config file {str(config)!r}"
        )
        raise ConfigError(format_validation_error(e, where)) from e
    finally:
        _FILE_DATA.reset(token)
