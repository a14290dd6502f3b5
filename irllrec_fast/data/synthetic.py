"""The built-in synthetic dataset: planted intents that both the interactions and the text show.

Generative story (all draws from one seeded numpy Generator):
- C latent intents. Every item has one intent; item popularity follows a power law (Zipf) and
  intents differ in size.
- Every user likes a few intents (a sparse Dirichlet mixture) and has a power-law number of
  interactions; each interaction picks an intent from the user's mixture (or, with probability
  `noise`, any item by popularity) and then an item of that intent by popularity.
- Text: each intent has a random "profile" direction and a random "intent-text" direction. A user's
  profile embedding is its mixture of profile directions, an item's the direction of its intent;
  intent-text embeddings likewise ("likes" its intents, "dislikes" one it does not like), all
  plus Gaussian noise of relative size `text_noise`. So the text tells which intents a user or item
  belongs to, which is exactly what a sparse interaction history tells poorly.
"""
from __future__ import annotations

import numpy as np

from .dataset import Dataset, TextEmbeddings, interaction_matrix
from .readers import per_user_split


def _check_arguments(**values) -> None:
    """ValueError naming the first argument out of range (numpy's own errors name none)."""
    minimum = {"num_users": 1, "num_items": 12, "num_intents": 1, "profile_width": 1,
               "intent_width": 1, "mean_interactions": 3}
    for name, low in minimum.items():
        if not values[name] >= low:
            raise ValueError(f"{name} must be >= {low}, got {values[name]}")
    for name in ("intents_per_user", "popularity_exponent", "text_noise"):
        if not values[name] >= 0 or (name == "intents_per_user" and values[name] == 0):
            raise ValueError(f"{name} must be {'> 0' if name == 'intents_per_user' else '>= 0'},"
                             f" got {values[name]}")
    if not 0 <= values["noise"] <= 1:
        raise ValueError(f"noise must lie in [0, 1], got {values['noise']}")


def make_synthetic(num_users: int = 1000, num_items: int = 600, num_intents: int = 12, *,
                   mean_interactions: float = 12.0, intents_per_user: float = 1.5,
                   popularity_exponent: float = 0.8, noise: float = 0.1,
                   profile_width: int = 64, intent_width: int = 48, text_noise: float = 0.6,
                   seed: int = 2023) -> Dataset:
    """A `Dataset` named "synthetic" with text embeddings; split 3:1:1 per user.

    Args:
        num_users, num_items, num_intents: sizes.
        mean_interactions: mean interactions per user (power-law distributed from 3; a user
            whose draws repeat items may end with fewer).
        intents_per_user: Dirichlet concentration scale of the users' intent mixtures (small:
            users focus on one or two intents).
        popularity_exponent: Zipf exponent of item popularity.
        noise: share of interactions drawn by popularity alone, ignoring intents.
        profile_width, intent_width: widths of the profile and intent-text embeddings.
        text_noise: standard deviation of the noise added to each (unit-norm) text direction,
            per dimension times sqrt(width), i.e. relative to the signal's norm.
        seed: seed of every draw.
    """
    _check_arguments(num_users=num_users, num_items=num_items, num_intents=num_intents,
                     mean_interactions=mean_interactions, intents_per_user=intents_per_user,
                     popularity_exponent=popularity_exponent, noise=noise,
                     profile_width=profile_width, intent_width=intent_width,
                     text_noise=text_noise)
    rng = np.random.default_rng(seed)
    C = num_intents
    item_intent = rng.choice(C, size=num_items, p=rng.dirichlet(np.full(C, 3.0)))
    popularity = 1.0 / np.arange(1, num_items + 1) ** popularity_exponent
    popularity = popularity[rng.permutation(num_items)]

    # items grouped by intent, with each group's popularity CDF stacked: intent c's CDF runs
    # over (c, c + 1], so one searchsorted picks an item of a chosen intent
    order = np.argsort(item_intent, kind="stable")
    grouped_intent = item_intent[order]
    weight = popularity[order]
    totals = np.bincount(grouped_intent, weights=weight, minlength=C)
    within = np.cumsum(weight) - np.concatenate([[0.0], np.cumsum(totals)[:-1]])[grouped_intent]
    stacked_cdf = grouped_intent + within / totals[grouped_intent]

    mixture = rng.dirichlet(np.full(C, intents_per_user / C), size=num_users)
    activity = 3 + np.floor(rng.pareto(2.5, size=num_users) * (mean_interactions - 3) * 1.5)
    activity = np.minimum(activity, num_items // 4).astype(np.int64)

    draws = 2 * activity  # duplicates are dropped below, so draw more than needed
    users = np.repeat(np.arange(num_users), draws)
    cum_mix = np.cumsum(mixture, axis=1)
    cum_mix[:, -1] = 1.0
    chosen = (rng.random(users.size)[:, None] > cum_mix[users]).sum(1)
    items = order[np.minimum(np.searchsorted(stacked_cdf, chosen + rng.random(users.size)),
                             num_items - 1)]
    random_pick = rng.random(users.size) < noise
    pop_cdf = np.cumsum(popularity) / popularity.sum()
    items[random_pick] = np.minimum(np.searchsorted(pop_cdf, rng.random(random_pick.sum())),
                                    num_items - 1)

    # dedupe, then keep the first `activity` distinct items of each user (draws are shuffled)
    key, first = np.unique(users * num_items + items, return_index=True)
    first = np.sort(first)
    users, items = users[first], items[first]
    start = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=num_users))[:-1]])
    keep = (np.arange(users.size) - start[users]) < activity[users]
    users, items = users[keep], items[keep]

    # every item needs an interaction to be in the graph: give the unseen ones one random user
    unseen = np.flatnonzero(np.bincount(items, minlength=num_items) == 0)
    users = np.concatenate([users, rng.integers(0, num_users, unseen.size)])
    items = np.concatenate([items, unseen])

    text = _text_embeddings(rng, mixture, item_intent, profile_width, intent_width, text_noise)
    assign = per_user_split(users, items, num_users, num_items, (3, 1, 1), seed)
    mats = [interaction_matrix(users[assign == s], items[assign == s], num_users, num_items,
                               "synthetic") for s in range(3)]
    return Dataset("synthetic", *mats, text=text, source="synthetic")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _text_embeddings(rng, mixture, item_intent, profile_width, intent_width, text_noise):
    num_users, C = mixture.shape
    num_items = item_intent.size
    profile_dirs = _unit_rows(rng.standard_normal((C, profile_width)))
    intent_dirs = _unit_rows(rng.standard_normal((C, intent_width)))
    onehot = np.eye(C)[item_intent]
    # "dislikes": an intent with (near) zero weight in the user's mixture
    disliked = np.eye(C)[np.argmin(mixture + rng.random(mixture.shape) * 1e-3, axis=1)]

    def noisy(signal, width):
        return (signal + rng.standard_normal(signal.shape) * text_noise / np.sqrt(width)) \
            .astype(np.float32)

    return TextEmbeddings(
        profile_user=noisy(mixture @ profile_dirs, profile_width),
        profile_item=noisy(onehot @ profile_dirs, profile_width),
        intent_user=noisy((mixture - 0.3 * disliked) @ intent_dirs, intent_width),
        intent_item=noisy(onehot @ intent_dirs, intent_width),
    )
