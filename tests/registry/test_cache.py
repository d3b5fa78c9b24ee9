"""ModelCache: the bounded, least-recently-used cache of loaded models."""

from __future__ import annotations

import threading

from modeldeploy.registry._cache import ModelCache


def test_a_miss_is_none_and_a_hit_is_the_same_object() -> None:
    cache = ModelCache(2)
    model = object()
    assert cache.get("a") is None
    cache.put("a", model)
    assert cache.get("a") is model
    assert "a" in cache and len(cache) == 1


def test_the_least_recently_used_goes_first() -> None:
    cache = ModelCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # now "b" is the least recently used
    cache.put("c", 3)
    assert "b" not in cache
    assert cache.get("a") == 1 and cache.get("c") == 3


def test_size_zero_keeps_nothing_and_clear_forgets_all() -> None:
    empty = ModelCache(0)
    empty.put("a", 1)
    assert len(empty) == 0
    cache = ModelCache(3)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.clear()
    assert len(cache) == 0 and cache.get("a") is None


def test_a_smaller_size_applies_at_the_next_put() -> None:
    cache = ModelCache(3)
    for key in "abc":
        cache.put(key, key)
    cache.size = 1
    cache.put("d", "d")
    assert len(cache) == 1 and cache.get("d") == "d"


def test_many_threads_never_exceed_the_size() -> None:
    cache = ModelCache(4)

    def work(k: int) -> None:
        for i in range(500):
            cache.put(f"{k}-{i % 7}", i)
            cache.get(f"{k}-{(i + 3) % 7}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 4
    assert "4/4" in repr(cache)
