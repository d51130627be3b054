"""Deterministic synthetic retail catalogue and a messy, unordered interaction log.

`generate(cfg, seed)` returns `(catalogue, raw_events)` in the raw contract shared with the P5 reader.
The catalogue is a Top > Sub > Leaf category tree with brand-focused, Zipf-popular items; users have
1-2 favourite sub-categories and explore a little. The log is then made messy the way real logs are:
exact duplicate rows, malformed rows and rows naming items missing from the catalogue.

Row accounting (what the cleaning step must recover), with n_clean the number of valid events:
    rows = n_clean + round(duplicate_rate * n_clean)      # exact copies of clean rows
                   + round(malformed_rate * n_clean)      # added, spread over MALFORMED_KINDS
                   + round(unknown_item_rate * n_clean)   # added, item_id "X999..."
The clean-event count depends only on n_users, the event-count settings and the seed, never on the
messiness rates, because counts come from their own random stream and messy rows are added.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from genrec_core.config import SyntheticConfig

CATALOGUE_SCHEMA = pa.schema([
    ("item_id", pa.string()), ("title", pa.string()), ("brand", pa.string()),
    ("categories", pa.string()), ("price", pa.float64()), ("description", pa.string()),
])
# Every raw event column is a string, exactly as it would arrive in a CSV log.
RAW_EVENTS_SCHEMA = pa.schema([
    ("user_id", pa.string()), ("item_id", pa.string()), ("event_type", pa.string()),
    ("event_time", pa.string()), ("rating", pa.string()),
])

EVENT_TYPES = ("view", "click", "cart", "fav", "buy", "rate")
_EVENT_PROBS = np.array([0.56, 0.24, 0.08, 0.05, 0.05, 0.02])
_RATINGS = ("1.0", "2.0", "3.0", "4.0", "5.0")
# Ratings skew high, as on real review sites.
_RATING_PROBS = np.array([0.05, 0.07, 0.15, 0.33, 0.40])
MALFORMED_KINDS = ("null_user", "empty_item", "bad_time", "bad_type", "negative_rating")
BAD_TIME, BAD_TYPE, NEGATIVE_RATING = "not-a-time", "teleport", "-3"
UNKNOWN_ITEM_PREFIX = "X999"
# Row kinds used internally: 0 clean, 1 unknown item, 2.. the malformed kinds in order.
_CLEAN, _UNKNOWN = 0, 1

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
_NULL_BRAND_SHARE, _NULL_PRICE_SHARE, _NULL_DESCRIPTION_SHARE = 0.04, 0.03, 0.10


@dataclass(frozen=True)
class _Cell:
    """One (top, sub) category: the unit of user taste."""

    top: int
    path: str  # "Top > Sub"
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    units: tuple[str, ...]
    phrases: tuple[str, ...]
    log_median: float
    sigma: float


def generate(cfg: SyntheticConfig, seed: int) -> tuple[pa.Table, pa.Table]:
    """Returns (catalogue, raw_events) for `cfg`, identical for identical (cfg, seed)."""
    _check(cfg)
    # Separate streams so that, e.g., changing n_users leaves the catalogue unchanged.
    rng_cat, rng_count, rng_taste, rng_mess = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    cells = _category_tree(cfg.n_top_categories, cfg.n_sub_categories)
    catalogue, item_cell, cell_weight = _catalogue(cfg, cells, rng_cat)
    counts = _event_counts(cfg, rng_count)
    events = _events(cfg, counts, item_cell, cell_weight, rng_taste, rng_mess)
    return catalogue, _render_events(cfg, catalogue.column("item_id").combine_chunks(), events)


def _check(cfg: SyntheticConfig) -> None:
    for name in ("n_items", "n_top_categories", "n_sub_categories"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"synthetic.{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("n_users", "n_brands", "min_events_per_user", "days"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"synthetic.{name} must be >= 0, got {getattr(cfg, name)}")
    for name in ("duplicate_rate", "malformed_rate", "unknown_item_rate", "mean_events_per_user"):
        if not getattr(cfg, name) >= 0:
            raise ValueError(f"synthetic.{name} must be >= 0, got {getattr(cfg, name)}")


# ---------------------------------------------------------------- catalogue


def _category_tree(n_top: int, n_sub: int) -> list[_Cell]:
    """n_top x n_sub cells; names past the vocabulary are reused with a number suffix."""
    cells = []
    for t in range(n_top):
        name, median, sigma, adjs, units, phrases, subs = _TAXONOMY[t % len(_TAXONOMY)]
        top = name if t < len(_TAXONOMY) else f"{name} {t // len(_TAXONOMY) + 1}"
        for s in range(n_sub):
            sub, nouns = subs[s % len(subs)]
            sub = sub if s < len(subs) else f"{sub} {s // len(subs) + 1}"
            cells.append(_Cell(t, f"{top} > {sub}", nouns, adjs, units, phrases,
                               float(np.log(median)), sigma))
    return cells


def _brand_names(n: int, rng: np.random.Generator) -> list[str]:
    """n distinct pronounceable names built from 2-3 syllables, e.g. "Lumora"."""
    k = len(_SYLLABLES)
    combos = [a + b for a in _SYLLABLES for b in _SYLLABLES]
    combos += [a + b + c for a in _SYLLABLES[: k // 2] for b in _SYLLABLES for c in _SYLLABLES]
    # dict.fromkeys dedupes ("lu"+"mora" == "lumo"+"ra") while keeping the shuffled order.
    names = list(dict.fromkeys(combos[i].capitalize() for i in rng.permutation(len(combos))))
    out = names[:n]
    # Past the syllable space, reuse names with a number suffix rather than failing.
    out += [f"{names[i % len(names)]} {i // len(names) + 1}" for i in range(len(out), n)]
    return out


def _brands_by_top(n_brands: int, n_top: int, rng: np.random.Generator) -> list[np.ndarray]:
    """For each top category, the brands focused on it (each brand covers 1-3 tops)."""
    members: list[list[int]] = [[] for _ in range(n_top)]
    for b in range(n_brands):
        # Round-robin primary focus keeps every top category covered when n_brands >= n_top.
        extra = rng.choice(n_top, size=min(n_top, int(rng.integers(0, 3))), replace=False)
        for t in {b % n_top, *extra.tolist()}:
            members[t].append(b)
    everyone = np.arange(n_brands)
    return [np.array(m) if m else everyone for m in members]


def _assign_cells(n_items: int, n_cells: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Item -> cell (every cell non-empty when possible) and cell popularity weights."""
    weight = rng.gamma(1.5, size=n_cells)
    first = rng.permutation(n_cells)[: min(n_items, n_cells)]
    rest = rng.choice(n_cells, size=n_items - len(first), p=weight / weight.sum())
    item_cell = rng.permutation(np.concatenate([first, rest]))
    weight = np.where(np.bincount(item_cell, minlength=n_cells) > 0, weight, 0.0)
    return item_cell, weight / weight.sum()


def _pick(rng: np.random.Generator, sizes: np.ndarray) -> np.ndarray:
    """One uniform index below each of `sizes` (vectorised over items)."""
    return (rng.random(len(sizes)) * sizes).astype(np.int64)


def _item_brands(cfg: SyntheticConfig, cells: list[_Cell], item_cell: np.ndarray,
                 rng: np.random.Generator) -> list[str | None]:
    names = _brand_names(cfg.n_brands, rng)
    if not names:
        return [None] * len(item_cell)
    members = _brands_by_top(len(names), cfg.n_top_categories, rng)
    # Some brands are much bigger than others.
    size = rng.pareto(1.5, size=len(names)) + 1.0
    top = np.array([c.top for c in cells])[item_cell]
    brand = np.empty(len(item_cell), dtype=np.int64)
    for t, m in enumerate(members):
        at = np.flatnonzero(top == t)
        brand[at] = rng.choice(m, size=len(at), p=size[m] / size[m].sum())
    generic = rng.random(len(item_cell)) < _NULL_BRAND_SHARE
    return [None if g else names[b] for b, g in zip(brand.tolist(), generic.tolist())]


def _catalogue(cfg: SyntheticConfig, cells: list[_Cell],
               rng: np.random.Generator) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    n = cfg.n_items
    item_cell, cell_weight = _assign_cells(n, len(cells), rng)
    brands = _item_brands(cfg, cells, item_cell, rng)
    sizes = {f: np.array([len(getattr(c, f)) for c in cells])[item_cell]
             for f in ("nouns", "adjectives", "units", "phrases")}
    noun, adj, unit, phrase = (_pick(rng, sizes[f]).tolist()
                               for f in ("nouns", "adjectives", "units", "phrases"))
    titles, categories, descriptions = [], [], []
    for i, c in enumerate(item_cell.tolist()):
        cell = cells[c]
        nn, aa, brand = cell.nouns[noun[i]], cell.adjectives[adj[i]], brands[i]
        titles.append(" ".join(p for p in (brand, aa, nn, cell.units[unit[i]]) if p))
        categories.append(f"{cell.path} > {nn.title()}")
        maker = f" from {brand}" if brand else ""
        descriptions.append(f"{aa.capitalize()} {nn}{maker}. {cell.phrases[phrase[i]]}")
    prices = _prices(cells, item_cell, rng)
    no_desc = rng.random(n) < _NULL_DESCRIPTION_SHARE
    table = pa.table({
        "item_id": [f"I{i:06d}" for i in range(1, n + 1)],
        "title": titles, "brand": pa.array(brands, pa.string()), "categories": categories,
        "price": pa.array(prices, mask=rng.random(n) < _NULL_PRICE_SHARE),
        "description": pa.array(descriptions, mask=no_desc),
    }, schema=CATALOGUE_SCHEMA)
    return table, item_cell, cell_weight


def _prices(cells: list[_Cell], item_cell: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Log-normal per category, with .99 endings like real shelf prices."""
    mu = np.array([c.log_median for c in cells]) + rng.normal(0.0, 0.25, size=len(cells))
    sigma = np.array([c.sigma for c in cells])
    raw = np.exp(rng.normal(mu[item_cell], sigma[item_cell]))
    return np.maximum(np.round(raw) - 0.01, 0.99)


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class _Events:
    """Column-wise events before rendering to strings; row i of each array is one raw row."""

    user: np.ndarray
    item: np.ndarray  # catalogue row; unknown-item rows carry a pool index instead
    kind: np.ndarray  # _CLEAN, _UNKNOWN or 2 + index into MALFORMED_KINDS
    etype: np.ndarray  # index into EVENT_TYPES
    rating: np.ndarray  # index into _RATINGS, -1 when the event carries no rating
    second: np.ndarray  # seconds since cfg.start_date

    def take(self, idx: np.ndarray) -> "_Events":
        return _Events(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def _event_counts(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Clean events per user: negative binomial (heavy-tailed) around the mean, floored at the min."""
    m, r = cfg.mean_events_per_user, 3.0
    drawn = rng.negative_binomial(r, r / (r + m), size=cfg.n_users)
    return np.maximum(drawn, cfg.min_events_per_user).astype(np.int64)


def _events(cfg: SyntheticConfig, counts: np.ndarray, item_cell: np.ndarray, cell_weight: np.ndarray,
            rng_taste: np.random.Generator, rng_mess: np.random.Generator) -> _Events:
    n_clean = int(counts.sum())
    n_dup, n_mal, n_unk = (int(round(r * n_clean)) for r in
                           (cfg.duplicate_rate, cfg.malformed_rate, cfg.unknown_item_rate))
    extra_kind, extra_user = _extra_rows(n_mal, n_unk, cfg.n_users, rng_mess)
    extra = np.bincount(extra_user, minlength=cfg.n_users)
    # Messy rows get their own slots on the user's timeline, so no row shares a user-second.
    totals = counts + extra
    user = np.repeat(np.arange(cfg.n_users), totals)
    kind = _slot_kinds(user, totals, extra, extra_kind, rng_mess)
    cells = _event_cells(user, cfg.n_users, cell_weight, rng_taste)
    item = _sample_items(cells, _item_sampler(item_cell, len(cell_weight), cfg.zipf_exponent,
                                              rng_taste), rng_taste)
    etype, rating = _event_types(len(user), rng_taste)
    second = _timeline(totals, 86_400 * cfg.days, rng_taste)
    ev = _Events(user, item, kind, etype, rating, second)
    ev = _corrupt(ev, n_unk, rng_mess)
    dup = rng_mess.choice(np.flatnonzero(kind == _CLEAN), size=n_dup, replace=n_dup > n_clean) \
        if n_dup else np.zeros(0, np.int64)
    rows = np.concatenate([np.arange(len(user)), dup])
    return ev.take(rows[rng_mess.permutation(len(rows))])  # logs arrive unordered


def _starts(counts: np.ndarray) -> np.ndarray:
    """Offset of each group in a flat array holding groups of `counts` rows back to back."""
    return (np.cumsum(counts) - counts).astype(np.int64)


def _extra_rows(n_mal: int, n_unk: int, n_users: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Kinds of the added rows (malformed kinds round-robin) and their users, sorted by user."""
    kind = np.concatenate([np.full(n_unk, _UNKNOWN), 2 + np.arange(n_mal) % len(MALFORMED_KINDS)])
    kind = rng.permutation(kind).astype(np.int64)
    user = rng.integers(0, n_users, size=len(kind)) if n_users else np.zeros(0, np.int64)
    order = np.argsort(user, kind="stable")
    return kind[order], user[order]


def _slot_kinds(user: np.ndarray, totals: np.ndarray, extra: np.ndarray, extra_kind: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """Marks `extra[u]` random slots of each user u as messy rows, with kinds from `extra_kind`."""
    # user is sorted, so a random fraction added to it shuffles slots within each user only.
    order = np.argsort(user + rng.random(len(user)), kind="stable")
    starts = _starts(totals)
    rank = np.empty(len(user), np.int64)
    rank[order] = np.arange(len(user)) - starts[user[order]]
    is_extra = rank < extra[user]
    kind = np.full(len(user), _CLEAN, np.int64)
    # Slots are grouped by user in ascending order, as is extra_kind, so per-user counts line up.
    kind[is_extra] = extra_kind
    return kind


def _event_cells(user: np.ndarray, n_users: int, cell_weight: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Each event's sub-category: mostly one of the user's 1-2 favourites, sometimes exploration."""
    cdf = np.cumsum(cell_weight)

    def draw(size: int) -> np.ndarray:  # cells by popularity
        return np.minimum(np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right"), len(cdf) - 1)

    fav1, fav2 = draw(n_users), draw(n_users)
    fav2 = np.where(rng.random(n_users) < 0.5, fav1, fav2)  # half the users have one favourite
    explore = rng.beta(2.0, 10.0, size=n_users)  # ~17% exploration on average
    share1 = rng.uniform(0.55, 0.85, size=n_users)
    r1, r2 = rng.random(len(user)), rng.random(len(user))
    cells = np.where(r2 < share1[user], fav1[user], fav2[user])
    roam = r1 < explore[user]
    cells[roam] = draw(int(roam.sum()))
    return cells


def _item_sampler(item_cell: np.ndarray, n_cells: int, exponent: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys `cell + cumulative Zipf share` and the item behind each key.

    Searching `cell + u` (u uniform in [0, 1)) in the keys draws an item of that cell with Zipf
    probability, for all events at once.
    """
    order = np.lexsort((rng.random(len(item_cell)), item_cell))  # random popularity rank per cell
    cell = item_cell[order]
    counts = np.bincount(cell, minlength=n_cells)
    starts = _starts(counts)
    rank = np.arange(len(cell)) - starts[cell]
    w = (rank + 1.0) ** -exponent
    cum = np.cumsum(w)
    before = np.concatenate([[0.0], cum])[starts[cell]]
    last = starts[cell] + counts[cell] - 1
    frac = (cum - before) / (cum[last] - before)
    frac[last == np.arange(len(cell))] = 1.0  # exact cell boundary despite rounding
    return cell + frac, order


def _sample_items(cells: np.ndarray, sampler: tuple[np.ndarray, np.ndarray],
                  rng: np.random.Generator) -> np.ndarray:
    keys, items = sampler
    u = np.minimum(rng.random(len(cells)), 1.0 - 1e-9)
    pos = np.searchsorted(keys, cells + u, side="right")
    return items[np.minimum(pos, len(items) - 1)]


def _event_types(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    etype = rng.choice(len(EVENT_TYPES), size=n, p=_EVENT_PROBS)
    rating = rng.choice(len(_RATINGS), size=n, p=_RATING_PROBS)
    return etype, np.where(etype == EVENT_TYPES.index("rate"), rating, -1)


def _timeline(totals: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """Strictly increasing whole seconds per user inside a per-user active span of the window.

    Gaps are gamma(0.3) distributed, so activity comes in bursts (sessions) separated by quiet days.
    A user with more events than seconds in the span (e.g. days=0) gets one event per second.
    """
    n_users, n = len(totals), int(totals.sum())
    lo = np.floor(rng.uniform(0.0, 0.6, n_users) * window).astype(np.int64)
    hi = lo + np.ceil((window - lo) * rng.uniform(0.3, 1.0, n_users)).astype(np.int64)
    # One extra gap per user closes the span, so the last event is not pinned to its end.
    seg = totals + 1
    gaps = rng.gamma(0.3, size=int(seg.sum())) + 1e-12
    seg_start = _starts(seg)
    cum = np.cumsum(gaps)
    base = np.concatenate([[0.0], cum])[seg_start]
    user = np.repeat(np.arange(n_users), totals)
    k = np.arange(n) - np.repeat(_starts(totals), totals)
    pos = seg_start[user] + k
    frac = (cum[pos] - base[user]) / (cum[seg_start + seg - 1] - base)[user]
    span = np.maximum(hi - lo - totals, 0)
    # Adding k after flooring makes the seconds strictly increasing within each user.
    return lo[user] + np.floor(frac * span[user]).astype(np.int64) + k


def _corrupt(ev: _Events, n_unk: int, rng: np.random.Generator) -> _Events:
    """Applies the row kinds: unknown items get an id from a small pool, a negative rating rides on
    a "rate" event. The other malformed kinds are applied while rendering strings."""
    item, etype, rating = ev.item.copy(), ev.etype.copy(), ev.rating.copy()
    unk = ev.kind == _UNKNOWN
    # A few discontinued items recur, as in real logs.
    item[unk] = rng.integers(0, max(1, n_unk // 3 + 1), size=int(unk.sum()))
    neg = ev.kind == 2 + MALFORMED_KINDS.index("negative_rating")
    etype[neg] = EVENT_TYPES.index("rate")
    rating[neg] = len(_RATINGS)  # NEGATIVE_RATING, appended to the vocabulary when rendering
    return _Events(ev.user, item, ev.kind, etype, rating, ev.second)


# ---------------------------------------------------------------- rendering


def _render_events(cfg: SyntheticConfig, item_ids: pa.Array, ev: _Events) -> pa.Table:
    kind = ev.kind

    def is_kind(name: str) -> np.ndarray:
        return kind == 2 + MALFORMED_KINDS.index(name)

    users = pa.array([f"U{u:06d}" for u in range(1, cfg.n_users + 1)], pa.string())
    n_pool = int(ev.item[kind == _UNKNOWN].max()) + 1 if (kind == _UNKNOWN).any() else 0
    item_vocab = pa.concat_arrays([item_ids, pa.array(
        [""] + [f"{UNKNOWN_ITEM_PREFIX}{j:05d}" for j in range(n_pool)], pa.string())])
    item_idx = np.where(kind == _UNKNOWN, len(item_ids) + 1 + ev.item, ev.item)
    item_idx = np.where(is_kind("empty_item"), len(item_ids), item_idx)
    type_vocab = pa.array(EVENT_TYPES + (BAD_TYPE,))
    etype = np.where(is_kind("bad_type"), len(EVENT_TYPES), ev.etype)
    rating_vocab = pa.array(_RATINGS + (NEGATIVE_RATING,))
    times = _iso_seconds(cfg.start_date, ev.second)
    bad_time = is_kind("bad_time")
    if bad_time.any():
        times = pc.replace_with_mask(times, pa.array(bad_time),
                                     pa.array([BAD_TIME] * int(bad_time.sum()), pa.string()))
    return pa.table({
        "user_id": users.take(pa.array(ev.user, mask=is_kind("null_user"))),
        "item_id": item_vocab.take(pa.array(item_idx)),
        "event_type": type_vocab.take(pa.array(etype)),
        "event_time": times,
        "rating": rating_vocab.take(pa.array(np.maximum(ev.rating, 0), mask=ev.rating < 0)),
    }, schema=RAW_EVENTS_SCHEMA)


def _iso_seconds(start_date: str, seconds: np.ndarray) -> pa.Array:
    """ISO-8601 "YYYY-MM-DDTHH:MM:SS" strings; built from day and time-of-day lookup tables because
    formatting a million timestamps one by one takes seconds."""
    if len(seconds) == 0:
        return pa.array([], pa.string())
    origin = np.datetime64(start_date, "s")
    origin_day = origin.astype("datetime64[D]")
    day, tod = np.divmod(seconds + (origin - origin_day).astype(np.int64), 86_400)
    days = pa.array((origin_day + np.arange(int(day.max()) + 1)).astype("U10"))
    used, tod_idx = np.unique(tod, return_inverse=True)
    clock = (np.datetime64("2000-01-01T00:00:00", "s") + used).astype("U19")
    clocks = pc.utf8_slice_codeunits(pa.array(clock), 11)
    return pc.binary_join_element_wise(days.take(pa.array(day)), clocks.take(pa.array(tod_idx)), "T")
