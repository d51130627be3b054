"""Pure parts of the synthetic generator: the taxonomy, the size plan, and slow reference versions
of the random draws that `jobs/sources/generator.py` makes in Spark.

The generator (`genrec generate`, `jobs.sources.generator.generate`) is Spark-parallel and deterministic by
seed: every random number is a hash of (seed, salt, keys) mapped to [0, 1), so a row's content
depends on its keys only, never on partitioning or core count. This module holds what is small
enough to compute on the driver (category tree, cell sizes, brands, sampling tables, id
scramblers) as a `Plan`, plus numpy references of each per-row formula (`hash_uniform`,
`zipf_rank`, `alias_draw`, `activity_counts`, `session_day`) that the Spark expressions are
tested against. No Spark here.

Shape of the data (see jobs/sources/generator.py for the row layout and the manifest):
- users: `n_users`, a `bot_user_rate` share of them bots; human activity is heavy-tailed (a
  Pareto-like profile over activity ranks), at least `min_events_per_user` each, summing to exactly
  `n_events` clean events;
- items: a Top > Sub > Leaf tree of (top, sub) cells; Zipf popularity inside each cell;
- human events come in sessions, a session mostly stays in one cell, and a user's favourite cell
  drifts to another over their active span (taste drift).
"""
from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from genrec_core.config import SyntheticConfig
from schemas.tables import EVENT_TYPES

# One probability per schemas.tables.EVENT_TYPES entry, in its order.
EVENT_PROBS = (0.56, 0.24, 0.08, 0.05, 0.05, 0.02)
RATINGS = ("1.0", "2.0", "3.0", "4.0", "5.0")
# Ratings skew high, as on real review sites.
RATING_PROBS = (0.05, 0.07, 0.15, 0.33, 0.40)
# Bots crawl: they never rate.
BOT_EVENT_TYPES = tuple(t for t in EVENT_TYPES if t != "rate")

# Extra rows a human session may carry, at most one of each kind per session, in this order. Each
# malformed kind breaks exactly one rule and is named by its schemas.tables.REASONS code.
MALFORMED_KINDS = ("null_user_id", "null_item_id", "bad_event_time", "event_time_out_of_window",
                   "unknown_event_type", "bad_rating")
EXTRA_KINDS = ("exact_duplicate", "near_duplicate", *MALFORMED_KINDS, "unknown_item")
BAD_TIME, BAD_TYPE, BAD_RATING = "not-a-time", "teleport", "-3"
# Leap years, so a Feb 29 event date stays a real date; both lie outside any sane clean window.
OUT_OF_WINDOW_YEARS = ("1972", "2196")
UNKNOWN_ITEM_PREFIX = "X999"

# Human timing. Consecutive events of a user are >= MIN_GAP_SECONDS apart; a near-duplicate lands
# 1..NEAR_DUPLICATE_MAX_OFFSET s after its original. So with the clean stage's near-duplicate window
# N in [NEAR_DUPLICATE_MAX_OFFSET, MIN_GAP_SECONDS - NEAR_DUPLICATE_MAX_OFFSET) = [10, 31), exactly
# the injected copies are near-duplicates, whether a repeat is compared with the previous kept row
# or the previous row. Human gaps are far above any "median gap < 1 s" bot rule.
MIN_GAP_SECONDS = 41
NEAR_DUPLICATE_MAX_OFFSET = 10
# Space kept free at the end of each session slot (near-duplicate offset + a full gap).
SLOT_MARGIN = NEAR_DUPLICATE_MAX_OFFSET + MIN_GAP_SECONDS
# A human's active span is long enough for at most this many events per day on average; with
# sessions of <= SESSION_LENGTH[1] events a day holds < 200, far under any events-per-day bot rule.
MAX_HUMAN_EVENTS_PER_DAY = 150
SESSION_LENGTH = (2, 10)  # events per session, drawn per user
STEP_SECONDS = (45, 240)  # preferred spacing of a user's events within a session
# Bots: 1-3 bot days each, every bot day BOT_EVENTS events within seconds (gaps of 0 or 1 s, mostly 0).
BOT_DAYS = (1, 3)
BOT_EVENTS = (40, 80)
# Human activity: the count above min_events_per_user at activity-rank quantile x follows a Pareto
# quantile function with tail index ACTIVITY_ALPHA (see activity_share).
ACTIVITY_ALPHA = 3.0
# Share of human events that pick an item uniformly inside the cell instead of by Zipf rank: keeps
# the long tail populated, so a k-core filter keeps most of the catalogue.
UNIFORM_ITEM_SHARE = 0.15
# Catalogue sparsity.
NULL_BRAND_SHARE, NULL_PRICE_SHARE, NULL_DESCRIPTION_SHARE, NULL_ATTRIBUTES_SHARE = 0.04, 0.03, 0.10, 0.15
# Rows per output task when the plan picks the partitioning itself (cfg.partitions == 0).
ROWS_PER_TASK = 1_000_000
SECONDS_PER_DAY = 86_400

# (top, median price, log-sigma, adjectives, size/variant suffixes, description phrases,
#  ((sub, leaf nouns), ...)). Leaf nouns double as the third category level.
_TAXONOMY = (
    ("Beauty", 18.0, 0.5,
     ("hydrating", "nourishing", "brightening", "gentle", "matte", "radiant", "soothing",
      "vitamin c", "overnight", "organic", "long-lasting", "lightweight"),
     ("30ml", "50ml", "100ml", "200ml", "travel size", ""),
     ("Dermatologist tested and suitable for daily use.", "Free from parabens and sulfates.",
      "A cult favourite for sensitive skin.", "Cruelty-free and vegan formula."),
     (("Skin Care", ("night cream", "day cream", "serum", "face mask", "toner", "cleanser")),
      ("Makeup", ("foundation", "mascara", "lipstick", "eyeliner", "blush", "concealer")),
      ("Hair Care", ("shampoo", "conditioner", "hair oil", "hair mask", "styling gel")),
      ("Fragrance", ("eau de parfum", "eau de toilette", "body mist", "perfume oil")),
      ("Nail Care", ("nail polish", "top coat", "cuticle oil", "nail file")),
      ("Bath & Body", ("body lotion", "shower gel", "body scrub", "bath bomb", "hand cream")))),
    ("Electronics", 45.0, 0.8,
     ("wireless", "noise-cancelling", "compact", "portable", "fast-charging", "waterproof",
      "bluetooth", "ultra-slim", "smart", "high-resolution"),
     ("", "black", "white", "2-pack", "gen 2", "pro"),
     ("Ships with a two-year warranty.", "Up to 30 hours of battery life.",
      "Pairs instantly with phones and laptops.", "Rated best value by reviewers."),
     (("Headphones", ("earbuds", "over-ear headphones", "on-ear headphones", "sports earphones")),
      ("Phone Accessories", ("phone case", "screen protector", "car mount", "power bank")),
      ("Cameras", ("action camera", "dash cam", "webcam", "instant camera")),
      ("Speakers", ("speaker", "soundbar", "smart speaker", "party speaker")),
      ("Chargers & Cables", ("usb-c cable", "wall charger", "wireless charger", "charging dock")),
      ("Wearables", ("fitness tracker", "smartwatch", "smart ring", "sleep tracker")))),
    ("Home & Kitchen", 30.0, 0.7,
     ("stainless steel", "non-stick", "ceramic", "bamboo", "cast iron", "stackable",
      "minimalist", "heavy-duty", "insulated", "hand-crafted"),
     ("", "2-piece set", "4-piece set", "large", "small", "1.5l"),
     ("Dishwasher safe.", "Designed to last a lifetime.", "Fits any modern kitchen.",
      "Made from responsibly sourced materials."),
     (("Cookware", ("frying pan", "saucepan", "dutch oven", "wok")),
      ("Coffee & Tea", ("french press", "pour-over kettle", "espresso cup", "tea infuser")),
      ("Bedding", ("duvet cover", "pillowcase", "fitted sheet", "weighted blanket")),
      ("Storage", ("storage box", "spice rack", "pantry jar", "drawer organizer")),
      ("Lighting", ("desk lamp", "floor lamp", "string lights", "night light")),
      ("Cutlery", ("chef knife", "steak knives", "knife block", "cutting board")))),
    ("Sports & Outdoors", 35.0, 0.8,
     ("lightweight", "breathable", "ultralight", "durable", "reflective", "quick-dry",
      "ergonomic", "all-weather", "padded", "foldable"),
     ("", "size m", "size l", "20l", "one size", "set of 2"),
     ("Tested by athletes in all conditions.", "Packs down small for travel.",
      "Built for beginners and pros alike.", "Sweat-wicking and easy to clean."),
     (("Running", ("running shoes", "running vest", "hydration belt", "running socks")),
      ("Camping", ("tent", "sleeping bag", "camping stove", "headlamp")),
      ("Cycling", ("bike helmet", "bike light", "cycling gloves", "saddle bag")),
      ("Yoga", ("yoga mat", "yoga block", "yoga strap", "meditation cushion")),
      ("Fitness Equipment", ("dumbbells", "kettlebell", "resistance bands", "jump rope")),
      ("Swimming", ("swim goggles", "swim cap", "kickboard", "swim towel")))),
    ("Toys & Games", 22.0, 0.6,
     ("classic", "educational", "colourful", "wooden", "magnetic", "deluxe", "pocket",
      "family", "glow-in-the-dark", "collectible"),
     ("", "ages 3+", "ages 8+", "500 pieces", "1000 pieces", "travel edition"),
     ("Hours of screen-free fun.", "Safety tested for young children.",
      "A perfect birthday gift.", "Encourages creativity and problem solving."),
     (("Board Games", ("strategy game", "party game", "card game", "word game")),
      ("Puzzles", ("jigsaw puzzle", "3d puzzle", "puzzle cube", "brain teaser")),
      ("Building Sets", ("building bricks", "marble run", "construction kit", "magnetic tiles")),
      ("Dolls", ("fashion doll", "baby doll", "doll house", "action figure")),
      ("Outdoor Play", ("water blaster", "kite", "bubble machine", "flying disc")),
      ("Plush", ("teddy bear", "plush unicorn", "plush dinosaur", "cuddly bunny")))),
    ("Grocery", 8.0, 0.5,
     ("organic", "roasted", "gluten-free", "unsweetened", "dark", "spicy", "wholegrain",
      "fair-trade", "sea salt", "honey"),
     ("250g", "500g", "1kg", "6-pack", "12-pack", ""),
     ("No artificial flavours.", "Sourced from small family farms.",
      "Resealable pack keeps it fresh.", "A pantry staple."),
     (("Snacks", ("almonds", "crackers", "trail mix", "popcorn")),
      ("Coffee", ("coffee beans", "ground coffee", "coffee pods", "cold brew")),
      ("Tea", ("green tea", "black tea", "herbal tea", "matcha")),
      ("Pantry", ("olive oil", "pasta", "basmati rice", "peanut butter")),
      ("Beverages", ("sparkling water", "kombucha", "fruit juice", "energy drink")),
      ("Breakfast", ("granola", "oatmeal", "muesli", "pancake mix")))),
    ("Books", 15.0, 0.4,
     ("illustrated", "bestselling", "award-winning", "pocket", "hardcover", "annotated",
      "beginner's", "complete", "essential", "collector's"),
     ("hardcover", "paperback", "2nd edition", "", "box set"),
     ("A modern classic.", "Translated into twenty languages.",
      "Praised by critics and readers.", "Includes a new foreword."),
     (("Fiction", ("mystery novel", "fantasy novel", "thriller", "romance novel")),
      ("Cookbooks", ("baking cookbook", "vegan cookbook", "grilling cookbook", "pasta cookbook")),
      ("Children's Books", ("picture book", "bedtime stories", "activity book", "early reader")),
      ("Biography", ("memoir", "biography", "autobiography", "letters collection")),
      ("Science", ("astronomy guide", "physics primer", "biology handbook", "field guide")),
      ("Travel", ("city guide", "road atlas", "phrasebook", "hiking guide")))),
    ("Pet Supplies", 20.0, 0.6,
     ("grain-free", "chewable", "durable", "orthopedic", "self-cleaning", "natural",
      "interactive", "washable", "calming", "squeaky"),
     ("small", "medium", "large", "2kg", "6kg", ""),
     ("Vet approved.", "Loved by picky pets.", "Made without fillers.", "Easy to clean."),
     (("Dog Food", ("dry dog food", "wet dog food", "puppy food", "senior dog food")),
      ("Cat Toys", ("feather wand", "catnip mouse", "laser toy", "scratching post")),
      ("Aquarium", ("aquarium filter", "fish tank", "aquarium heater", "water conditioner")),
      ("Grooming", ("pet brush", "pet shampoo", "nail clipper", "deshedding tool")),
      ("Pet Beds", ("dog bed", "cat bed", "pet blanket", "crate mat")),
      ("Treats", ("dental chews", "jerky treats", "training treats", "cat treats")))),
    ("Clothing", 28.0, 0.6,
     ("slim-fit", "relaxed", "organic cotton", "merino", "waterproof", "vintage", "cropped",
      "oversized", "stretch", "linen"),
     ("size s", "size m", "size l", "size xl", ""),
     ("Machine washable.", "True to size.", "Ethically made.", "Soft from the first wear."),
     (("Tops", ("t-shirt", "hoodie", "sweater", "blouse")),
      ("Bottoms", ("jeans", "chinos", "joggers", "shorts")),
      ("Outerwear", ("rain jacket", "puffer jacket", "parka", "windbreaker")),
      ("Shoes", ("sneakers", "boots", "sandals", "loafers")),
      ("Accessories", ("scarf", "beanie", "belt", "sunglasses")),
      ("Underwear", ("boxer briefs", "socks", "sports bra", "thermal leggings")))),
    ("Garden", 25.0, 0.7,
     ("weatherproof", "solar", "galvanised", "biodegradable", "self-watering", "heavy-duty",
      "terracotta", "expandable", "ergonomic", "frost-resistant"),
     ("", "5l", "10l", "20m", "set of 3", "large"),
     ("Built for every season.", "Gardener tested.", "Rust resistant.", "Easy to assemble."),
     (("Plant Care", ("plant food", "potting soil", "plant mister", "grow light")),
      ("Garden Tools", ("pruning shears", "hand trowel", "garden fork", "rake")),
      ("Watering", ("garden hose", "watering can", "sprinkler", "drip kit")),
      ("Planters", ("planter", "hanging basket", "raised bed", "window box")),
      ("Outdoor Lighting", ("solar lantern", "path light", "festoon lights", "spotlight")),
      ("Seeds", ("tomato seeds", "herb seeds", "wildflower seeds", "bulb mix")))),
)
_SYLLABLES = ("lu", "mo", "ra", "ve", "ka", "zi", "no", "ta", "ri", "so", "el", "an", "or",
              "is", "ix", "qu", "bel", "dor", "fen", "mar", "nix", "pal", "ser", "tor", "vin")
# Free-form attributes per top category: (key, values) pairs; an item gets the first and maybe the
# second, as a small JSON object.
_ATTRIBUTES = {
    "Beauty": (("skin_type", ("all", "dry", "oily", "combination", "sensitive")),
               ("scent", ("unscented", "rose", "citrus", "lavender", "vanilla"))),
    "Electronics": (("color", ("black", "white", "silver", "blue", "graphite")),
                    ("warranty_years", ("1", "2", "3"))),
    "Home & Kitchen": (("material", ("steel", "ceramic", "bamboo", "glass", "cotton")),
                       ("color", ("white", "black", "sage", "terracotta", "navy"))),
    "Sports & Outdoors": (("size", ("xs", "s", "m", "l", "xl")),
                          ("color", ("black", "red", "blue", "green", "orange"))),
    "Toys & Games": (("age_range", ("3+", "6+", "8+", "12+", "adult")),
                     ("players", ("1", "2-4", "2-6", "3+"))),
    "Grocery": (("diet", ("vegan", "vegetarian", "gluten-free", "keto", "none")),
                ("origin", ("italy", "spain", "kenya", "colombia", "japan"))),
    "Books": (("format", ("hardcover", "paperback", "ebook", "audiobook")),
              ("language", ("english", "french", "german", "spanish"))),
    "Pet Supplies": (("pet", ("dog", "cat", "fish", "small animal")),
                     ("size", ("small", "medium", "large"))),
    "Clothing": (("size", ("xs", "s", "m", "l", "xl")),
                 ("color", ("black", "white", "navy", "olive", "grey"))),
    "Garden": (("material", ("steel", "plastic", "terracotta", "wood")),
               ("season", ("spring", "summer", "all-year"))),
}


# ---------------------------------------------------------------- random draws (references)

_MASK64 = (1 << 64) - 1
_P1, _P2, _P3, _P4, _P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                            0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)
SPARK_HASH_SEED = 42  # the seed of Spark's xxhash64()


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK64


def _xxh64_long(value: int, seed: int) -> int:
    """Spark's XXH64.hashLong: xxHash64 of one 8-byte long, unsigned 64-bit in and out."""
    h = (seed + _P5 + 8) & _MASK64
    k = _rotl((value & _MASK64) * _P2 & _MASK64, 31) * _P1 & _MASK64
    h = (_rotl(h ^ k, 27) * _P1 + _P4) & _MASK64
    h ^= h >> 33
    h = h * _P2 & _MASK64
    h ^= h >> 29
    h = h * _P3 & _MASK64
    return h ^ (h >> 32)


def xxhash64(*values: int) -> int:
    """Spark SQL's `xxhash64(v1, v2, ...)` over bigint arguments (signed, as Spark returns it)."""
    h = SPARK_HASH_SEED
    for v in values:
        h = _xxh64_long(int(v), h)
    return h - (1 << 64) if h >> 63 else h


def salt(stream: str) -> int:
    """Stable integer id of a named random stream."""
    return zlib.crc32(stream.encode())


def hash_uniform(seed: int, stream: str, *keys: int) -> float:
    """u in [0, 1) for (seed, stream, keys): the top 53 bits of xxhash64(seed, salt(stream), *keys)."""
    return ((xxhash64(seed, salt(stream), *keys) & _MASK64) >> 11) * 2.0 ** -53


def zipf_constant(n: int, exponent: float) -> float:
    """Per-size constant of `zipf_rank`, computed once on the driver (so both paths share it)."""
    if abs(exponent - 1.0) < 1e-9:
        return math.log(n + 1.0)
    return (n + 1.0) ** (1.0 - exponent) - 1.0


def zipf_rank(u, n, exponent: float, const) -> np.ndarray:
    """Rank in [0, n) with P(rank = k) close to (k + 1) ** -exponent / H: the inverse CDF of the
    continuous power law on [1, n + 1), floored. `const` = zipf_constant(n, exponent)."""
    u, n, const = (np.asarray(v, dtype=float) for v in (u, n, const))
    if abs(exponent - 1.0) < 1e-9:
        x = np.exp(u * const)
    else:
        x = np.power(1.0 + u * const, 1.0 / (1.0 - exponent))
    return np.clip(np.floor(x) - 1.0, 0.0, n - 1.0).astype(np.int64)


def alias_table(weights) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Walker/Vose alias table for positive weights: draw i = floor(u1 * n), then keep i if
    u2 < prob[i], else take alias[i]. O(1) per draw with two array lookups, which Spark can do."""
    w = np.asarray(weights, dtype=float)
    if len(w) == 0 or (w <= 0).any():
        raise ValueError("alias_table needs at least one weight, all positive")
    p = w * len(w) / w.sum()
    prob, alias = np.ones(len(w)), np.arange(len(w))
    small = [i for i in range(len(w)) if p[i] < 1.0]
    large = [i for i in range(len(w)) if p[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = p[s], g
        p[g] -= 1.0 - p[s]
        (small if p[g] < 1.0 else large).append(g)
    return tuple(prob.tolist()), tuple(alias.tolist())  # leftovers keep prob 1 (rounding only)


def alias_draw(u1, u2, prob, alias) -> np.ndarray:
    prob, alias = np.asarray(prob), np.asarray(alias)
    i = np.minimum((np.asarray(u1) * len(prob)).astype(np.int64), len(prob) - 1)
    return np.where(np.asarray(u2) < prob[i], i, alias[i])


ACTIVITY_EPS = 0.05  # a small linear part keeps G strictly increasing, so counts never dip below min


def activity_share(x):
    """G(x) in [0, 1]: share of the above-minimum events owned by the top x of human users by
    activity rank. Its slope is (mostly) the Pareto(ACTIVITY_ALPHA) quantile function minus its
    minimum, so a few users are very active and the least active sit near min_events_per_user."""
    a, e = ACTIVITY_ALPHA, ACTIVITY_EPS
    x = np.asarray(x, dtype=float)
    return (1.0 - e) * (a * np.power(x, (a - 1.0) / a) - (a - 1.0) * x) + e * x


def activity_counts(n_humans: int, n_events: int, min_events: int) -> np.ndarray:
    """Clean events per human by activity rank r (0 = most active):
    min + C(r + 1) - C(r), C(r) = floor(X * G(r / N)) and C(N) = X, X = n_events - min * N.
    It telescopes, so the counts sum to exactly n_events."""
    extra = n_events - min_events * n_humans
    cum = np.floor(extra * activity_share(np.arange(n_humans + 1) / max(n_humans, 1)))
    cum[-1] = extra
    return (min_events + np.diff(cum)).astype(np.int64)


def session_day(j, n_sessions: int, span: int, phase: int):
    """Day offset in [0, span) of session j of n_sessions spread evenly over a user's span
    (0 <= phase < span). Days never decrease with j, and a day holds at most ceil(n_sessions / span)
    sessions, consecutive in j: so `j mod ceil(n_sessions / span)` gives them distinct time slots."""
    return (np.asarray(j) * span + phase) // n_sessions


def _murmur3_int(value: int, seed: int = SPARK_HASH_SEED) -> int:
    """Spark's Murmur3_x86_32.hashInt (what hash() and repartition(n, col) use for an int column)."""
    m32 = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & m32

    k = rotl((value & m32) * 0xCC9E2D51 & m32, 15) * 0x1B873593 & m32
    h = (rotl(seed ^ k, 13) * 5 + 0xE6546B64) & m32
    h ^= 4
    h ^= h >> 16
    h = h * 0x85EBCA6B & m32
    h ^= h >> 13
    h = h * 0xC2B2AE35 & m32
    h ^= h >> 16
    return h - (1 << 32) if h >> 31 else h


def hash_partition(value: int, partitions: int) -> int:
    """The partition that Spark's repartition(partitions, col) sends an int `value` to."""
    return _murmur3_int(value) % partitions  # Python's % is Spark's pmod here


def partition_keys(partitions: int) -> tuple[int, ...]:
    """keys[p]: the smallest int that hash partitioning sends to partition p. Repartitioning on
    keys[p] puts a row exactly in partition p: range placement without range partitioning's
    sampling pass over the input."""
    keys: list = [None] * partitions
    left, value = partitions, 0
    while left:
        p = hash_partition(value, partitions)
        if keys[p] is None:
            keys[p], left = value, left - 1
        value += 1
    return tuple(keys)


def scrambler(n: int, seed: int, stream: str) -> tuple[int, int]:
    """(mult, add) with x -> (mult * x + add) mod n a bijection of [0, n)."""
    if n <= 1:
        return 1, 0
    mult = 1 + int(hash_uniform(seed, stream, n) * (n - 1))
    while math.gcd(mult, n) != 1:
        mult = mult % (n - 1) + 1
    return mult, int(hash_uniform(seed, stream + ".add", n) * n)


# ---------------------------------------------------------------- category tree and brands


@dataclass(frozen=True)
class Cell:
    """One (top, sub) category: the unit of user taste."""

    top: int
    top_name: str
    path: str  # "Top > Sub"
    nouns: tuple[str, ...]
    leaves: tuple[str, ...]  # the nouns as third category level, e.g. "Night Cream"
    adjectives: tuple[str, ...]
    units: tuple[str, ...]
    phrases: tuple[str, ...]
    log_median: float
    sigma: float
    attributes: tuple[tuple[str, tuple[str, ...]], ...]  # (key, values) pairs of the top category


def category_tree(n_top: int, n_sub: int) -> list[Cell]:
    """n_top x n_sub cells, top-major; names past the vocabulary are reused with a number suffix."""
    cells = []
    for t in range(n_top):
        name, median, sigma, adjs, units, phrases, subs = _TAXONOMY[t % len(_TAXONOMY)]
        top = name if t < len(_TAXONOMY) else f"{name} {t // len(_TAXONOMY) + 1}"
        for s in range(n_sub):
            sub, nouns = subs[s % len(subs)]
            sub = sub if s < len(subs) else f"{sub} {s // len(subs) + 1}"
            cells.append(Cell(t, top, f"{top} > {sub}", nouns, tuple(n.title() for n in nouns), adjs,
                              units, phrases, math.log(median), sigma, _ATTRIBUTES[name]))
    return cells


def brand_names(n: int, rng: np.random.Generator) -> list[str]:
    """n distinct pronounceable names built from 2-3 syllables, e.g. "Lumora"."""
    k = len(_SYLLABLES)
    combos = [a + b for a in _SYLLABLES for b in _SYLLABLES]
    combos += [a + b + c for a in _SYLLABLES[: k // 2] for b in _SYLLABLES for c in _SYLLABLES]
    # dict.fromkeys dedupes ("lu"+"mora" == "lumo"+"ra") while keeping the shuffled order.
    names = list(dict.fromkeys(combos[i].capitalize() for i in rng.permutation(len(combos))))
    out = names[:n]
    # Past the syllable space, reuse names with a number suffix rather than failing.
    return out + [f"{names[i % len(names)]} {i // len(names) + 1}" for i in range(len(out), n)]


def brands_by_top(n_brands: int, n_top: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """For each top category, its brands, biggest first (each brand covers 1-3 tops)."""
    members: list[list[int]] = [[] for _ in range(n_top)]
    size = rng.pareto(1.5, size=n_brands) + 1.0
    for b in range(n_brands):
        # Round-robin primary focus keeps every top category covered when n_brands >= n_top.
        extra = rng.choice(n_top, size=min(n_top, int(rng.integers(0, 3))), replace=False)
        for t in {b % n_top, *extra.tolist()}:
            members[t].append(b)
    everyone = list(range(n_brands))
    # Biggest first: items then pick a brand by Zipf rank, so big brands carry many items.
    return [tuple(sorted(m or everyone, key=lambda b: -size[b])) for m in members]


def cell_sizes(n_items: int, weights: np.ndarray) -> np.ndarray:
    """Items per cell, proportional to weights (largest remainder), every cell non-empty if possible."""
    n_cells = len(weights)
    base = np.zeros(n_cells, np.int64)
    if n_items >= n_cells:
        base += 1
    rest = n_items - int(base.sum())
    share = weights / weights.sum() * rest
    sizes = base + np.floor(share).astype(np.int64)
    short = n_items - int(sizes.sum())
    order = np.lexsort((np.arange(n_cells), -(share - np.floor(share))))
    sizes[order[:short]] += 1
    return sizes


# ---------------------------------------------------------------- the plan


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed & _MASK64, salt(stream)])


def n_bots(cfg: SyntheticConfig) -> int:
    return int(round(cfg.bot_user_rate * cfg.n_users))


def n_clean_events(cfg: SyntheticConfig) -> int:
    """Clean human events: cfg.n_events, or n_humans * mean_events_per_user when that is 0."""
    humans = cfg.n_users - n_bots(cfg)
    return cfg.n_events if cfg.n_events > 0 else int(round(humans * cfg.mean_events_per_user))


def check(cfg: SyntheticConfig) -> None:
    """Raises ValueError naming the first setting that cannot produce a valid dataset."""
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ValueError(f"synthetic: {msg}")

    for name in ("n_items", "n_top_categories", "n_sub_categories", "days"):
        need(getattr(cfg, name) >= 1, f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("n_users", "n_brands", "min_events_per_user", "n_events", "max_late_days", "partitions"):
        need(getattr(cfg, name) >= 0, f"{name} must be >= 0, got {getattr(cfg, name)}")
    for name in ("duplicate_rate", "near_duplicate_rate", "malformed_rate", "unknown_item_rate",
                 "late_rate", "bot_user_rate"):
        need(0.0 <= getattr(cfg, name) <= 1.0, f"{name} must lie in [0, 1], got {getattr(cfg, name)}")
    need(cfg.mean_events_per_user >= 0 and cfg.zipf_exponent >= 0,
         "mean_events_per_user and zipf_exponent must be >= 0")
    need(cfg.late_rate == 0 or cfg.max_late_days >= 1, "late_rate > 0 needs max_late_days >= 1")
    need(max(cfg.n_users, cfg.n_items) < 2**31, "n_users and n_items must be < 2^31")
    date.fromisoformat(cfg.start_date)
    humans, events = cfg.n_users - n_bots(cfg), n_clean_events(cfg)
    need(events >= cfg.min_events_per_user * humans,
         f"{events} events cannot give {humans} human users {cfg.min_events_per_user} each")
    need(humans > 0 or events == 0, "events need at least one human user")
    if humans:
        heaviest = _heaviest(humans, events, cfg)
        need(heaviest <= MAX_HUMAN_EVENTS_PER_DAY * cfg.days,
             f"the most active user would need {heaviest} events in {cfg.days} days (at most "
             f"{MAX_HUMAN_EVENTS_PER_DAY} a day look human): raise n_users or days")
    need(n_bots(cfg) == 0 or len(BOT_EVENT_TYPES) * cfg.n_items >= BOT_EVENTS[1],
         f"bots need n_items >= {-(-BOT_EVENTS[1] // len(BOT_EVENT_TYPES))} (distinct items per bot day)")


def _heaviest(humans: int, events: int, cfg: SyntheticConfig) -> int:
    extra = events - cfg.min_events_per_user * humans
    top = extra if humans == 1 else math.floor(extra * float(activity_share(1.0 / humans)))
    return cfg.min_events_per_user + top


def resize(cfg: SyntheticConfig, n_events: int | None = None, n_users: int | None = None,
           n_items: int | None = None) -> SyntheticConfig:
    """The same shape at another size. Given n_events alone, users and items scale with it so that
    events per user and per item stay as in cfg (the demo preset at 10^8 events has ~7M users)."""
    changes: dict = {}
    if n_events is not None:
        base = max(n_clean_events(cfg), 1)
        changes["n_events"] = n_events
        n_users = n_users if n_users is not None else max(1, round(cfg.n_users * n_events / base))
        n_items = n_items if n_items is not None else max(1, round(cfg.n_items * n_events / base))
    if n_users is not None:
        changes["n_users"] = n_users
    if n_items is not None:
        changes["n_items"] = n_items
    return dataclasses.replace(cfg, **changes)


@dataclass(frozen=True)
class Plan:
    """Everything small the Spark job needs, resolved on the driver from (cfg, seed)."""

    cfg: SyntheticConfig
    seed: int
    n_humans: int
    n_bots: int
    n_events: int  # clean human events, exact
    dates: tuple[str, ...]  # day index -> "YYYY-MM-DD", for days + max_late_days days
    cells: tuple[Cell, ...]
    cell_start: tuple[int, ...]  # first internal item index of each cell
    cell_size: tuple[int, ...]
    cell_zipf: tuple[float, ...]  # zipf_constant(cell_size, zipf_exponent)
    cell_log_price: tuple[float, ...]  # log median price of each cell
    live_cells: tuple[int, ...]  # cells with items, in alias-table order
    alias_prob: tuple[float, ...]
    alias_index: tuple[int, ...]
    brands: tuple[str, ...]
    top_brands: tuple[tuple[int, ...], ...]
    user_perm: tuple[int, int]  # internal user -> public number - 1
    item_perm: tuple[int, int]  # internal item (cell-major, popularity rank) -> public number - 1
    unknown_pool: int  # distinct discontinued item ids
    partitions: int  # tasks writing the events, each a contiguous run of arrival dates
    buckets_per_day: int  # slots per arrival date (> 1 when a date needs several tasks)
    partition_keys: tuple[int, ...]  # see partition_keys()

    @property
    def n_users(self) -> int:
        return self.n_humans + self.n_bots

    @property
    def days(self) -> int:
        return self.cfg.days

    @property
    def arrival_days(self) -> int:
        return len(self.dates)

    @property
    def user_width(self) -> int:
        return max(6, len(str(self.n_users)))

    @property
    def item_width(self) -> int:
        return max(6, len(str(self.cfg.n_items)))

    @property
    def unknown_width(self) -> int:
        return max(5, len(str(self.unknown_pool)))

    def extra_rate(self, kind: str) -> float:
        """Expected rows of an extra kind per clean event (a session of m events carries one with
        probability min(1, m * rate))."""
        c = self.cfg
        return {"exact_duplicate": c.duplicate_rate, "near_duplicate": c.near_duplicate_rate,
                "unknown_item": c.unknown_item_rate}.get(kind, c.malformed_rate / len(MALFORMED_KINDS))


def plan(cfg: SyntheticConfig, seed: int) -> Plan:
    check(cfg)
    cells = category_tree(cfg.n_top_categories, cfg.n_sub_categories)
    weights = _rng(seed, "cells").gamma(1.5, size=len(cells))
    sizes = cell_sizes(cfg.n_items, weights)
    live = [c for c in range(len(cells)) if sizes[c] > 0]
    # Users pick cells in proportion to their item counts, so events per item match across cells.
    prob, alias = alias_table(sizes[live])
    price_rng = _rng(seed, "prices")
    log_price = [c.log_median + price_rng.normal(0.0, 0.25) for c in cells]
    brand_rng = _rng(seed, "brands")
    humans, bots, events = cfg.n_users - n_bots(cfg), n_bots(cfg), n_clean_events(cfg)
    days = cfg.days + cfg.max_late_days
    start = date.fromisoformat(cfg.start_date)
    unknown = max(1, round(cfg.unknown_item_rate * events / 3))  # a few discontinued ids recur
    return Plan(
        cfg=cfg, seed=seed, n_humans=humans, n_bots=bots, n_events=events,
        dates=tuple((start + timedelta(days=d)).isoformat() for d in range(days)),
        cells=tuple(cells), cell_start=tuple(int(v) for v in np.cumsum(sizes) - sizes),
        cell_size=tuple(int(v) for v in sizes),
        cell_zipf=tuple(zipf_constant(int(n), cfg.zipf_exponent) for n in sizes),
        cell_log_price=tuple(log_price), live_cells=tuple(live), alias_prob=prob, alias_index=alias,
        brands=tuple(brand_names(cfg.n_brands, brand_rng)),
        top_brands=tuple(brands_by_top(cfg.n_brands, cfg.n_top_categories, brand_rng)),
        user_perm=scrambler(cfg.n_users, seed, "user_ids"),
        item_perm=scrambler(cfg.n_items, seed, "item_ids"), unknown_pool=unknown,
        **_partitions(cfg, events, bots))


def _partitions(cfg: SyntheticConfig, events: int, bots: int) -> dict[str, int]:
    """Tasks that write the events, about ROWS_PER_TASK rows each. Sessions are range-partitioned
    by (arrival day, bucket), so a task writes one file per arrival date it holds: files stay near
    the number of dates (plus one per task boundary) at any size."""
    rates = cfg.duplicate_rate + cfg.near_duplicate_rate + cfg.malformed_rate + cfg.unknown_item_rate
    rows = events * (1.0 + rates) + bots * sum(BOT_EVENTS) / 2 * sum(BOT_DAYS) / 2
    partitions = cfg.partitions or max(2, math.ceil(rows / ROWS_PER_TASK))
    arrival_days = cfg.days + cfg.max_late_days
    return {"partitions": partitions, "buckets_per_day": max(1, math.ceil(partitions / arrival_days)),
            "partition_keys": partition_keys(partitions)}
